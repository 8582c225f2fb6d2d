// Matrix products through OpenBLAS: out = a @ b, with transposition read off the strides so
// that transposed views need no copy.
#include <cblas.h>
#include <omp.h>

#include "core/kernels/cpu/cpu_kernels.h"

namespace sy::kernels::cpu {
namespace {

// How BLAS should read a 2-D view: row-major with leading dimension, transposed or not.
struct BlasOperand {
  CBLAS_TRANSPOSE transpose;
  int64_t leading;
};

bool blas_layout(int64_t rows, int64_t cols, int64_t row_stride, int64_t col_stride, BlasOperand* operand) {
  if (col_stride == 1 && (rows == 1 || row_stride >= std::max<int64_t>(cols, 1))) {
    *operand = {CblasNoTrans, std::max<int64_t>(rows == 1 ? cols : row_stride, 1)};
    return true;
  }
  if (row_stride == 1 && (cols == 1 || col_stride >= std::max<int64_t>(rows, 1))) {
    *operand = {CblasTrans, std::max<int64_t>(cols == 1 ? rows : col_stride, 1)};
    return true;
  }
  return false;
}

template <typename T>
void gemm_one(const T* a, BlasOperand la, const T* b, BlasOperand lb, T* c, int64_t ldc, int64_t m,
              int64_t n, int64_t k) {
  if constexpr (std::is_same_v<T, float>) {
    cblas_sgemm(CblasRowMajor, la.transpose, lb.transpose, m, n, k, 1.0f, a, la.leading, b,
                lb.leading, 0.0f, c, ldc);
  } else {
    cblas_dgemm(CblasRowMajor, la.transpose, lb.transpose, m, n, k, 1.0, a, la.leading, b,
                lb.leading, 0.0, c, ldc);
  }
}

template <typename T>
void gemm_typed(Tensor a, Tensor b, Tensor& out) {
  const bool batched = a.dim() == 3;
  const int64_t batch = batched ? a.size(0) : 1;
  const int64_t m = a.size(-2), k = a.size(-1), n = b.size(-1);
  BlasOperand la, lb;
  if (!blas_layout(m, k, a.stride(-2), a.stride(-1), &la)) {
    a = a.contiguous();
    blas_layout(m, k, a.stride(-2), a.stride(-1), &la);
  }
  if (!blas_layout(k, n, b.stride(-2), b.stride(-1), &lb)) {
    b = b.contiguous();
    blas_layout(k, n, b.stride(-2), b.stride(-1), &lb);
  }
  SY_CHECK(out.is_contiguous(), "gemm writes a contiguous out");
  if (m == 0 || n == 0) return;
  if (k == 0) {
    fill(out, 0.0);
    return;
  }
  const T* a_data = a.data<T>();
  const T* b_data = b.data<T>();
  T* c_data = out.data<T>();
  const int64_t a_batch_stride = batched ? a.stride(0) : 0;
  const int64_t b_batch_stride = batched ? b.stride(0) : 0;
  // Small matrices: one BLAS call per core over the batch; large ones: BLAS threads.
  const bool small = m * n * k < 96 * 96 * 96;
  if (batch > 1 && small) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < batch; ++i) {
      gemm_one<T>(a_data + i * a_batch_stride, la, b_data + i * b_batch_stride, lb, c_data + i * m * n,
                  n, m, n, k);
    }
  } else {
    for (int64_t i = 0; i < batch; ++i) {
      gemm_one<T>(a_data + i * a_batch_stride, la, b_data + i * b_batch_stride, lb, c_data + i * m * n,
                  n, m, n, k);
    }
  }
}

}  // namespace

void gemm(const Tensor& a, const Tensor& b, Tensor& out) {
  SY_CHECK(a.dim() == b.dim() && a.dim() == out.dim() && (a.dim() == 2 || a.dim() == 3),
           "gemm: a ", ShapeString(a.shape()), " b ", ShapeString(b.shape()));
  SY_CHECK(a.size(-1) == b.size(-2) && out.size(-2) == a.size(-2) && out.size(-1) == b.size(-1),
           "gemm: a ", ShapeString(a.shape()), " b ", ShapeString(b.shape()), " out ",
           ShapeString(out.shape()));
  SY_CHECK(a.dtype() == b.dtype() && a.dtype() == out.dtype(), "gemm: mixed dtypes");
  switch (a.dtype()) {
    case DType::kF32: gemm_typed<float>(a, b, out); return;
    case DType::kF64: gemm_typed<double>(a, b, out); return;
    default: SY_FAIL("gemm: f32 or f64 expected (bf16/f16 are converted by the op), got ", dtype_name(a.dtype()));
  }
}

}  // namespace sy::kernels::cpu
