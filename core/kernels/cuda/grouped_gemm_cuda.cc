// The expert GEMM on CUDA: one cuBLASLt product per group of rows (cuBLAS 13.1 has no grouped
// GEMM), issued round-robin on a few side streams forked from the device's current stream and
// joined back, so that small experts overlap. Per group e with n_e rows at row offset r_e:
//   forward:     out_e (n_e, Cout) = x_e (n_e, Cin) @ w[e] (Cin, Cout)
//   weight grad: dw[e] (Cin, Cout) = x_e^T @ dout_e (n_e, Cout)
// f32 accumulation and compute (f64 for f64). cuBLASLt is column-major: a row-major (R, C)
// matrix is the column-major (C, R) matrix of its transpose, so out_e^T = w[e]^T x_e^T and
// dw[e]^T = dout_e^T x_e. The input gradient is the forward on the transposed view of w.
#include <algorithm>
#include <array>
#include <cstdint>
#include <memory>
#include <mutex>

#include "core/cuda/runtime.h"
#include "core/kernels/cuda/cublaslt_util.h"
#include "core/kernels/cuda/cuda_kernels.h"

namespace sy::kernels::cuda {
namespace {

// Enough streams to overlap the small experts' products; more adds launch cost, not overlap.
constexpr int kSideStreams = 4;
constexpr int kMaxDevices = 64;

// Side streams with their own cuBLASLt workspace (a workspace must not be shared by products
// that may run at once). Created on first use, kept for the process like the runtime's stream.
struct SideStreams {
  std::once_flag once;
  std::array<cudaStream_t, kSideStreams> streams = {};
  std::array<void*, kSideStreams> workspaces = {};
};

SideStreams& side_streams(int device) {
  static std::array<SideStreams, kMaxDevices>* pools = new std::array<SideStreams, kMaxDevices>();
  SY_CHECK(device >= 0 && device < kMaxDevices, "cuda grouped gemm: device ", device, " out of range");
  SideStreams& pool = (*pools)[device];
  const size_t workspace_bytes = sy::cuda::cublaslt_context(device).workspace_bytes;
  std::call_once(pool.once, [&] {
    sy::cuda::DeviceGuard guard(device);
    for (int s = 0; s < kSideStreams; ++s) {
      SY_CUDA_CHECK(cudaStreamCreateWithFlags(&pool.streams[s], cudaStreamNonBlocking));
      SY_CUDA_CHECK(cudaMalloc(&pool.workspaces[s], workspace_bytes));
    }
  });
  return pool;
}

// Where one product runs: a stream and a workspace only that stream uses.
struct Lane {
  cudaStream_t stream = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

// Forks `lanes` side streams from `main` and joins them back when destroyed (also when a
// product throws, so that the main stream never runs ahead of work that reads its memory).
class Fork {
 public:
  Fork(int device, cudaStream_t main, int lanes) : main_(main), lanes_(lanes) {
    const sy::cuda::CublasLtContext& context = sy::cuda::cublaslt_context(device);
    if (lanes_ <= 1) {
      lane_[0] = {main, context.workspace, context.workspace_bytes};
      lanes_ = 1;
      return;
    }
    SideStreams& pool = side_streams(device);
    cudaEvent_t forked = nullptr;
    SY_CUDA_CHECK(cudaEventCreateWithFlags(&forked, cudaEventDisableTiming));
    SY_CUDA_CHECK(cudaEventRecord(forked, main));
    for (int s = 0; s < lanes_; ++s) {
      lane_[s] = {pool.streams[s], pool.workspaces[s], context.workspace_bytes};
      SY_CUDA_CHECK(cudaStreamWaitEvent(pool.streams[s], forked, 0));
    }
    SY_CUDA_CHECK(cudaEventDestroy(forked));  // released once the waits are satisfied
    forked_ = true;
  }

  ~Fork() {
    if (!forked_) return;
    for (int s = 0; s < lanes_; ++s) {
      cudaEvent_t joined = nullptr;
      // A destructor must not throw; a failure here resurfaces at the next checked call.
      if (cudaEventCreateWithFlags(&joined, cudaEventDisableTiming) != cudaSuccess) continue;
      cudaEventRecord(joined, lane_[s].stream);
      cudaStreamWaitEvent(main_, joined, 0);
      cudaEventDestroy(joined);
    }
  }
  Fork(const Fork&) = delete;
  Fork& operator=(const Fork&) = delete;

  const Lane& lane(int64_t group) const { return lane_[group % lanes_]; }

 private:
  cudaStream_t main_;
  int lanes_;
  bool forked_ = false;
  std::array<Lane, kSideStreams> lane_ = {};
};

using cublaslt::data_type;
using cublaslt::DescDeleter;
using cublaslt::Layout;
using cublaslt::best_algorithm;

// A column-major matrix as stored: rows x cols with leading dimension `leading`; `transposed`
// makes the product read it as its transpose.
struct Matrix {
  const void* data = nullptr;
  int64_t rows = 0, cols = 0, leading = 0;
  bool transposed = false;
};

Layout make_layout(cudaDataType_t type, int64_t rows, int64_t cols, int64_t leading) {
  cublasLtMatrixLayout_t raw = nullptr;
  SY_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&raw, type, static_cast<uint64_t>(rows), static_cast<uint64_t>(cols),
                                             leading));
  return Layout(raw);
}

// d (m, n) column-major, leading m = op(a) (m, k) @ op(b) (k, n), on `lane`.
void lt_matmul(int device, const Lane& lane, DType dtype, const Matrix& a, const Matrix& b, void* d, int64_t m,
               int64_t n) {
  const sy::cuda::CublasLtContext& context = sy::cuda::cublaslt_context(device);
  const cudaDataType_t type = data_type(dtype);
  const bool f64 = dtype == DType::kF64;
  Layout a_layout = make_layout(type, a.rows, a.cols, a.leading);
  Layout b_layout = make_layout(type, b.rows, b.cols, b.leading);
  Layout d_layout = make_layout(type, m, n, m);

  cublasLtMatmulDesc_t raw_desc = nullptr;
  SY_CUBLAS_CHECK(cublasLtMatmulDescCreate(&raw_desc, f64 ? CUBLAS_COMPUTE_64F : CUBLAS_COMPUTE_32F,
                                           f64 ? CUDA_R_64F : CUDA_R_32F));
  std::unique_ptr<cublasLtMatmulDescOpaque_t, DescDeleter> desc(raw_desc);
  const cublasOperation_t transa = a.transposed ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t transb = b.transposed ? CUBLAS_OP_T : CUBLAS_OP_N;
  SY_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(raw_desc, CUBLASLT_MATMUL_DESC_TRANSA, &transa, sizeof transa));
  SY_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(raw_desc, CUBLASLT_MATMUL_DESC_TRANSB, &transb, sizeof transb));

  cublasLtMatmulHeuristicResult_t heuristic;
  const bool found = best_algorithm(context.handle, raw_desc, a_layout.get(), b_layout.get(), d_layout.get(),
                                    lane.workspace_bytes, a.data, b.data, d, &heuristic);
  SY_CHECK(found, "cuda grouped gemm: cuBLASLt has no algorithm for a (", m, ", ", n, ") product in ",
           dtype_name(dtype));
  const float alpha32 = 1.0f, beta32 = 0.0f;
  const double alpha64 = 1.0, beta64 = 0.0;
  const void* alpha = f64 ? static_cast<const void*>(&alpha64) : static_cast<const void*>(&alpha32);
  const void* beta = f64 ? static_cast<const void*>(&beta64) : static_cast<const void*>(&beta32);
  SY_CUBLAS_CHECK(cublasLtMatmul(context.handle, raw_desc, alpha, a.data, a_layout.get(), b.data, b_layout.get(),
                                 beta, d, d_layout.get(), d, d_layout.get(), &heuristic.algo, lane.workspace,
                                 lane.workspace_bytes, lane.stream));
}

// Checks counts against the N rows and returns each group's first row.
std::vector<int64_t> row_offsets(const char* op, const std::vector<int64_t>& counts, int64_t rows) {
  std::vector<int64_t> offsets(counts.size());
  int64_t total = 0;
  for (size_t e = 0; e < counts.size(); ++e) {
    SY_CHECK(counts[e] >= 0, op, ": negative count ", counts[e], " for group ", e);
    offsets[e] = total;
    total += counts[e];
  }
  SY_CHECK(total == rows, op, ": counts sum to ", total, " for ", rows, " rows");
  return offsets;
}

int nonempty_groups(const std::vector<int64_t>& counts) {
  int groups = 0;
  for (int64_t n : counts) groups += n > 0 ? 1 : 0;
  return groups;
}

const char* byte_pointer(const Tensor& tensor) { return static_cast<const char*>(tensor.data_ptr()); }

}  // namespace

void grouped_gemm(const Tensor& x, const Tensor& w, const std::vector<int64_t>& counts, Tensor& out) {
  SY_CHECK(x.dim() == 2 && w.dim() == 3 && out.dim() == 2 && x.size(1) == w.size(1) && out.size(0) == x.size(0) &&
               out.size(1) == w.size(2) && static_cast<int64_t>(counts.size()) == w.size(0),
           "cuda grouped gemm: x ", ShapeString(x.shape()), ", w ", ShapeString(w.shape()), ", out ",
           ShapeString(out.shape()), ", ", counts.size(), " counts (expected (N, Cin), (E, Cin, Cout), (N, Cout), E)");
  SY_CHECK(x.dtype() == w.dtype() && x.dtype() == out.dtype(), "cuda grouped gemm: dtypes ", dtype_name(x.dtype()),
           ", ", dtype_name(w.dtype()), " -> ", dtype_name(out.dtype()), " (one dtype expected)");
  SY_CHECK(x.device().is_cuda() && x.device() == w.device() && x.device() == out.device(), "cuda grouped gemm: x on ",
           x.device().to_string(), ", w on ", w.device().to_string(), ", out on ", out.device().to_string());
  SY_CHECK(x.is_contiguous() && out.is_contiguous(), "cuda grouped gemm: x and out must be contiguous");
  const std::vector<int64_t> offsets = row_offsets("cuda grouped gemm", counts, x.size(0));
  const int64_t in = x.size(1), out_cols = w.size(2);
  if (out.numel() == 0) return;
  if (in == 0) {
    fill(out, 0.0);
    return;
  }
  // w[e] row-major is cuBLASLt's column-major (Cout, Cin): used as is. Column-major (the
  // transposed view of an (E, Cout, Cin) tensor) is a column-major (Cin, Cout): transposed.
  Tensor weight = w;
  bool transposed = false;
  int64_t leading = 0;
  if (w.stride(2) == 1 && w.stride(1) >= out_cols) {
    leading = w.stride(1);
  } else if (w.stride(1) == 1 && w.stride(2) >= in) {
    transposed = true;
    leading = w.stride(2);
  } else {
    weight = w.detach().contiguous();
    leading = out_cols;
  }
  const int device = out.device().index;
  sy::cuda::DeviceGuard guard(device);
  const size_t bytes = element_size(x.dtype());
  Fork fork(device, sy::cuda::current_stream(device), std::min(nonempty_groups(counts), kSideStreams));
  int64_t issued = 0;
  for (size_t e = 0; e < counts.size(); ++e) {
    if (counts[e] == 0) continue;
    const Matrix a{byte_pointer(weight) + e * weight.stride(0) * bytes, transposed ? in : out_cols,
                   transposed ? out_cols : in, leading, transposed};
    const Matrix b{byte_pointer(x) + offsets[e] * in * bytes, in, counts[e], in, false};
    void* d = static_cast<char*>(out.data_ptr()) + offsets[e] * out_cols * bytes;
    lt_matmul(device, fork.lane(issued++), x.dtype(), a, b, d, out_cols, counts[e]);
  }
}

void grouped_gemm_weight_grad(const Tensor& x, const Tensor& dout, const std::vector<int64_t>& counts, Tensor& dw) {
  SY_CHECK(x.dim() == 2 && dout.dim() == 2 && dw.dim() == 3 && x.size(0) == dout.size(0) &&
               dw.size(1) == x.size(1) && dw.size(2) == dout.size(1) && static_cast<int64_t>(counts.size()) == dw.size(0),
           "cuda grouped gemm weight grad: x ", ShapeString(x.shape()), ", dout ", ShapeString(dout.shape()), ", dw ",
           ShapeString(dw.shape()), ", ", counts.size(), " counts (expected (N, Cin), (N, Cout), (E, Cin, Cout), E)");
  SY_CHECK(x.dtype() == dout.dtype() && x.dtype() == dw.dtype(), "cuda grouped gemm weight grad: dtypes ",
           dtype_name(x.dtype()), ", ", dtype_name(dout.dtype()), " -> ", dtype_name(dw.dtype()));
  SY_CHECK(x.device().is_cuda() && x.device() == dout.device() && x.device() == dw.device(),
           "cuda grouped gemm weight grad: x on ", x.device().to_string(), ", dout on ", dout.device().to_string(),
           ", dw on ", dw.device().to_string());
  SY_CHECK(x.is_contiguous() && dout.is_contiguous() && dw.is_contiguous(),
           "cuda grouped gemm weight grad: x, dout and dw must be contiguous");
  const std::vector<int64_t> offsets = row_offsets("cuda grouped gemm weight grad", counts, x.size(0));
  const int64_t in = x.size(1), out_cols = dout.size(1);
  if (dw.numel() == 0) return;
  const int device = dw.device().index;
  sy::cuda::DeviceGuard guard(device);
  cudaStream_t stream = sy::cuda::current_stream(device);
  const size_t bytes = element_size(x.dtype());
  const size_t matrix_bytes = static_cast<size_t>(in * out_cols) * bytes;
  // An expert that got no rows has a zero gradient (cuBLASLt would not be called with k = 0).
  for (size_t e = 0; e < counts.size(); ++e) {
    if (counts[e] == 0) {
      SY_CUDA_CHECK(cudaMemsetAsync(static_cast<char*>(dw.data_ptr()) + e * matrix_bytes, 0, matrix_bytes, stream));
    }
  }
  Fork fork(device, stream, std::min(nonempty_groups(counts), kSideStreams));
  int64_t issued = 0;
  for (size_t e = 0; e < counts.size(); ++e) {
    if (counts[e] == 0) continue;
    // dw[e]^T (Cout, Cin) = dout_e^T (Cout, n_e) @ x_e (n_e, Cin), x_e read as the transpose
    // of its column-major (Cin, n_e).
    const Matrix a{byte_pointer(dout) + offsets[e] * out_cols * bytes, out_cols, counts[e], out_cols, false};
    const Matrix b{byte_pointer(x) + offsets[e] * in * bytes, in, counts[e], in, true};
    void* d = static_cast<char*>(dw.data_ptr()) + e * matrix_bytes;
    lt_matmul(device, fork.lane(issued++), x.dtype(), a, b, d, out_cols, in);
  }
}

}  // namespace sy::kernels::cuda
