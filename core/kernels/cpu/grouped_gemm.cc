// Grouped GEMM over variable row counts, one OpenBLAS call per non-empty group.
//   forward:      out_e = x_e @ w_e                 x_e (n_e, Cin), w_e (Cin, Cout)
//   input grad:   dx_e = dout_e @ w_e^T             (the forward kernel on a transposed view of w)
//   weight grad:  dw_e = x_e^T @ dout_e             (written =; zero for an empty group)
// Threads: many small groups (fine-grained experts) run one group per core with BLAS on one
// thread each; a few large groups run one after another and let BLAS thread each product.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <numeric>

#include "core/kernels/cpu/grouped_gemm_kernels.h"

namespace sy::kernels::cpu {
namespace {

// Mean work of a group (rows * Cin * Cout) below which BLAS would not split it over cores
// anyway, so splitting the groups over the cores is the only parallelism left.
constexpr int64_t kSmallGroupWork = 96 * 96 * 96;
// Total work below which waking the other cores costs more than it saves.
constexpr int64_t kMinParallelWork = 64 * 64 * 64;

// Group offsets (E + 1) and whether to spread the groups over the cores.
struct Groups {
  std::vector<int64_t> start;
  bool across_cores = false;
};

Groups groups_of(const std::vector<int64_t>& counts, int64_t inner_work) {
  Groups groups;
  groups.start.resize(counts.size() + 1, 0);
  std::partial_sum(counts.begin(), counts.end(), groups.start.begin() + 1);
  const int64_t non_empty = std::count_if(counts.begin(), counts.end(), [](int64_t n) { return n > 0; });
  const int64_t rows = groups.start.back();
  const int64_t work = rows * inner_work;
  groups.across_cores = non_empty > 1 && !omp_in_parallel() && work >= kMinParallelWork &&
                        work < kSmallGroupWork * non_empty;
  return groups;
}

template <typename T>
void gemm_call(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t m, int64_t n, int64_t k, const T* a,
               int64_t lda, const T* b, int64_t ldb, T* c, int64_t ldc) {
  if constexpr (std::is_same_v<T, float>) {
    cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, ldc);
  } else {
    cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, 1.0, a, lda, b, ldb, 0.0, c, ldc);
  }
}

// Runs body(e) for every group, across the cores or one after another.
template <typename Body>
void for_each_group(const Groups& groups, int64_t E, Body&& body) {
  if (groups.across_cores) {
    // Group sizes vary with the routing: hand them out dynamically.
#pragma omp parallel for schedule(dynamic)
    for (int64_t e = 0; e < E; ++e) body(e);
  } else {
    for (int64_t e = 0; e < E; ++e) body(e);
  }
}

template <typename T>
void forward_typed(const Tensor& x, const Tensor& w, const std::vector<int64_t>& counts, Tensor& out) {
  const int64_t E = w.size(0), Cin = w.size(1), Cout = w.size(2);
  const bool transposed = !(w.stride(2) == 1 && w.stride(1) >= std::max<int64_t>(Cout, 1));
  const CBLAS_TRANSPOSE tb = transposed ? CblasTrans : CblasNoTrans;
  const int64_t ldb = std::max<int64_t>(transposed ? w.stride(2) : w.stride(1), 1);
  const T* x_data = x.data<T>();
  const T* w_data = w.data<T>();
  T* out_data = out.data<T>();
  const Groups groups = groups_of(counts, Cin * Cout);
  for_each_group(groups, E, [&](int64_t e) {
    const int64_t rows = counts[e];
    if (rows == 0) return;
    T* c = out_data + groups.start[e] * Cout;
    if (Cin == 0) {
      std::fill(c, c + rows * Cout, T(0));
      return;
    }
    gemm_call<T>(CblasNoTrans, tb, rows, Cout, Cin, x_data + groups.start[e] * Cin, Cin,
                 w_data + e * w.stride(0), ldb, c, Cout);
  });
}

template <typename T>
void weight_grad_typed(const Tensor& x, const Tensor& dout, const std::vector<int64_t>& counts, Tensor& dw) {
  const int64_t E = dw.size(0), Cin = dw.size(1), Cout = dw.size(2);
  const T* x_data = x.data<T>();
  const T* dout_data = dout.data<T>();
  T* dw_data = dw.data<T>();
  const Groups groups = groups_of(counts, Cin * Cout);
  for_each_group(groups, E, [&](int64_t e) {
    T* c = dw_data + e * Cin * Cout;
    if (counts[e] == 0) {
      std::fill(c, c + Cin * Cout, T(0));
      return;
    }
    gemm_call<T>(CblasTrans, CblasNoTrans, Cin, Cout, counts[e], x_data + groups.start[e] * Cin, Cin,
                 dout_data + groups.start[e] * Cout, Cout, c, Cout);
  });
}

void check_counts(const std::vector<int64_t>& counts, int64_t E, int64_t N) {
  SY_CHECK(static_cast<int64_t>(counts.size()) == E, "grouped_gemm: ", counts.size(), " counts for ", E,
           " groups");
  int64_t total = 0;
  for (int64_t n : counts) {
    SY_CHECK(n >= 0, "grouped_gemm: negative count ", n);
    total += n;
  }
  SY_CHECK(total == N, "grouped_gemm: counts sum to ", total, " for ", N, " rows");
}

}  // namespace

bool grouped_gemm_reads_weight(const Tensor& w) {
  const int64_t Cin = w.size(1), Cout = w.size(2);
  return (w.stride(2) == 1 && w.stride(1) >= std::max<int64_t>(Cout, 1)) ||
         (w.stride(1) == 1 && w.stride(2) >= std::max<int64_t>(Cin, 1));
}

void grouped_gemm(const Tensor& x, const Tensor& w, const std::vector<int64_t>& counts, Tensor& out) {
  SY_CHECK(x.dim() == 2 && w.dim() == 3 && out.dim() == 2 && x.size(1) == w.size(1) &&
               out.size(0) == x.size(0) && out.size(1) == w.size(2),
           "grouped_gemm: x ", ShapeString(x.shape()), " w ", ShapeString(w.shape()), " out ",
           ShapeString(out.shape()));
  SY_CHECK(x.is_contiguous() && out.is_contiguous() && grouped_gemm_reads_weight(w),
           "grouped_gemm: x and out contiguous, w row-major or transposed matrices expected");
  SY_CHECK(x.dtype() == w.dtype() && x.dtype() == out.dtype(), "grouped_gemm: mixed dtypes");
  check_counts(counts, w.size(0), x.size(0));
  switch (x.dtype()) {
    case DType::kF32: forward_typed<float>(x, w, counts, out); return;
    case DType::kF64: forward_typed<double>(x, w, counts, out); return;
    default: SY_FAIL("grouped_gemm: f32 or f64 expected (bf16/f16 are converted by the op), got ",
                     dtype_name(x.dtype()));
  }
}

void grouped_gemm_weight_grad(const Tensor& x, const Tensor& dout, const std::vector<int64_t>& counts,
                              Tensor& dw) {
  SY_CHECK(x.dim() == 2 && dout.dim() == 2 && dw.dim() == 3 && x.size(0) == dout.size(0) &&
               dw.size(1) == x.size(1) && dw.size(2) == dout.size(1),
           "grouped_gemm_weight_grad: x ", ShapeString(x.shape()), " dout ", ShapeString(dout.shape()),
           " dw ", ShapeString(dw.shape()));
  SY_CHECK(x.is_contiguous() && dout.is_contiguous() && dw.is_contiguous(),
           "grouped_gemm_weight_grad: contiguous tensors expected");
  SY_CHECK(x.dtype() == dout.dtype() && x.dtype() == dw.dtype(), "grouped_gemm_weight_grad: mixed dtypes");
  check_counts(counts, dw.size(0), x.size(0));
  switch (x.dtype()) {
    case DType::kF32: weight_grad_typed<float>(x, dout, counts, dw); return;
    case DType::kF64: weight_grad_typed<double>(x, dout, counts, dw); return;
    default: SY_FAIL("grouped_gemm_weight_grad: f32 or f64 expected, got ", dtype_name(x.dtype()));
  }
}

}  // namespace sy::kernels::cpu
