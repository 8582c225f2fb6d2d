// Batched matrix products through cuBLASLt:
//   out[b] (M, N) = a[b] (M, K) @ b[b] (K, N)   for b < batch, f32 accumulation/compute
// (f64 in f64). cuBLASLt is column-major; a row-major (M, N) matrix is the column-major
// (N, M) matrix of its transpose, so we compute out^T = b^T a^T: b is cuBLASLt's A operand
// and a its B operand. An operand that is row- or column-major in its last two dims is used
// in place (transposed as needed); any other layout is copied first. A batch stride of 0
// broadcasts an operand. Gradients are two more products, formed by the matmul op.
#include <cstdint>
#include <memory>

#include "core/cuda/runtime.h"
#include "core/kernels/cuda/cublaslt_util.h"
#include "core/kernels/cuda/cuda_kernels.h"

namespace sy::kernels::cuda {
namespace {

struct Operand {
  Tensor tensor;            // (batch, rows, cols), possibly a contiguous copy
  bool transposed = false;  // column-major in its last two dims
  int64_t leading = 0;      // leading dimension in elements
};

// Describes x (batch, rows, cols) as a row-major or column-major matrix stack.
Operand describe(const Tensor& x) {
  const int64_t rows = x.size(1), cols = x.size(2);
  if ((cols == 1 || x.stride(2) == 1) && (rows == 1 || x.stride(1) >= cols)) {
    return {x, false, rows == 1 ? std::max<int64_t>(cols, 1) : x.stride(1)};
  }
  if ((rows == 1 || x.stride(1) == 1) && (cols == 1 || x.stride(2) >= rows)) {
    return {x, true, cols == 1 ? std::max<int64_t>(rows, 1) : x.stride(2)};
  }
  Tensor packed = x.detach().contiguous();
  return {packed, false, std::max<int64_t>(cols, 1)};
}

using cublaslt::data_type;
using cublaslt::DescDeleter;
using cublaslt::Layout;
using cublaslt::best_algorithm;

// A column-major layout of `rows` x `cols` (before any transpose) with a batch stride.
Layout make_layout(cudaDataType_t type, int64_t rows, int64_t cols, int64_t leading, int64_t batch,
                   int64_t batch_stride) {
  cublasLtMatrixLayout_t raw = nullptr;
  SY_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&raw, type, static_cast<uint64_t>(rows), static_cast<uint64_t>(cols),
                                             leading));
  Layout layout(raw);
  int32_t count = static_cast<int32_t>(batch);
  SY_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(raw, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof count));
  SY_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(raw, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &batch_stride,
                                                   sizeof batch_stride));
  return layout;
}

}  // namespace

void gemm(const Tensor& a, const Tensor& b, Tensor& out) {
  SY_CHECK(a.dim() == 3 && b.dim() == 3 && out.dim() == 3 && a.size(0) == b.size(0) && a.size(0) == out.size(0) &&
               a.size(2) == b.size(1) && out.size(1) == a.size(1) && out.size(2) == b.size(2),
           "cuda gemm: a ", ShapeString(a.shape()), " b ", ShapeString(b.shape()), " out ",
           ShapeString(out.shape()), " (expected (batch, M, K), (batch, K, N), (batch, M, N))");
  SY_CHECK(a.dtype() == b.dtype() && a.dtype() == out.dtype(), "cuda gemm: dtypes ", dtype_name(a.dtype()), ", ",
           dtype_name(b.dtype()), " -> ", dtype_name(out.dtype()), " (one dtype expected)");
  SY_CHECK(a.device().is_cuda() && a.device() == b.device() && a.device() == out.device(), "cuda gemm: a on ",
           a.device().to_string(), ", b on ", b.device().to_string(), ", out on ", out.device().to_string());
  SY_CHECK(out.is_contiguous(), "cuda gemm: out ", ShapeString(out.shape()), " must be contiguous");
  const int64_t batch = a.size(0), m = a.size(1), k = a.size(2), n = b.size(2);
  if (batch == 0 || m == 0 || n == 0) return;
  if (k == 0) {
    fill(out, 0.0);
    return;
  }
  SY_CHECK(batch <= INT32_MAX, "cuda gemm: batch ", batch, " exceeds cuBLASLt's int32 batch count");
  const int device = out.device().index;
  sy::cuda::DeviceGuard guard(device);
  const sy::cuda::CublasLtContext& context = sy::cuda::cublaslt_context(device);
  cudaStream_t stream = sy::cuda::current_stream(device);

  const cudaDataType_t type = data_type(out.dtype());
  const bool f64 = out.dtype() == DType::kF64;
  const cublasComputeType_t compute = f64 ? CUBLAS_COMPUTE_64F : CUBLAS_COMPUTE_32F;
  const cudaDataType_t scale_type = f64 ? CUDA_R_64F : CUDA_R_32F;

  // cuBLASLt's A is our b as (N, K) column-major, its B our a as (K, M): D (N, M) = A B.
  Operand lt_a = describe(b), lt_b = describe(a);
  Layout a_layout = lt_a.transposed
                        ? make_layout(type, k, n, lt_a.leading, batch, lt_a.tensor.stride(0))
                        : make_layout(type, n, k, lt_a.leading, batch, lt_a.tensor.stride(0));
  Layout b_layout = lt_b.transposed
                        ? make_layout(type, m, k, lt_b.leading, batch, lt_b.tensor.stride(0))
                        : make_layout(type, k, m, lt_b.leading, batch, lt_b.tensor.stride(0));
  Layout d_layout = make_layout(type, n, m, n, batch, m * n);

  cublasLtMatmulDesc_t raw_desc = nullptr;
  SY_CUBLAS_CHECK(cublasLtMatmulDescCreate(&raw_desc, compute, scale_type));
  std::unique_ptr<cublasLtMatmulDescOpaque_t, DescDeleter> desc(raw_desc);
  cublasOperation_t transa = lt_a.transposed ? CUBLAS_OP_T : CUBLAS_OP_N;
  cublasOperation_t transb = lt_b.transposed ? CUBLAS_OP_T : CUBLAS_OP_N;
  SY_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(raw_desc, CUBLASLT_MATMUL_DESC_TRANSA, &transa, sizeof transa));
  SY_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(raw_desc, CUBLASLT_MATMUL_DESC_TRANSB, &transb, sizeof transb));

  const void* a_pointer = lt_a.tensor.data_ptr();
  const void* b_pointer = lt_b.tensor.data_ptr();
  void* d_pointer = out.data_ptr();
  cublasLtMatmulHeuristicResult_t heuristic;
  const bool found = best_algorithm(context.handle, raw_desc, a_layout.get(), b_layout.get(), d_layout.get(),
                                    context.workspace_bytes, a_pointer, b_pointer, d_pointer, &heuristic);
  SY_CHECK(found, "cuda gemm: cuBLASLt has no algorithm for a ", ShapeString(a.shape()), " @ b ",
           ShapeString(b.shape()), " in ", dtype_name(a.dtype()));

  const float alpha32 = 1.0f, beta32 = 0.0f;
  const double alpha64 = 1.0, beta64 = 0.0;
  const void* alpha = f64 ? static_cast<const void*>(&alpha64) : static_cast<const void*>(&alpha32);
  const void* beta = f64 ? static_cast<const void*>(&beta64) : static_cast<const void*>(&beta32);
  SY_CUBLAS_CHECK(cublasLtMatmul(context.handle, raw_desc, alpha, a_pointer, a_layout.get(), b_pointer,
                                 b_layout.get(), beta, d_pointer, d_layout.get(), d_pointer, d_layout.get(),
                                 &heuristic.algo, context.workspace, context.workspace_bytes, stream));
}

}  // namespace sy::kernels::cuda
