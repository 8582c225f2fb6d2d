// Fused cross-entropy over rows of logits x (N, V) with targets t (N), smoothing s:
//   lse = log sum exp(x),  nll = lse - x[t],  smooth = lse - mean(x)   (= mean_j -log p_j)
//   loss = (1 - s) * nll + s * smooth;  ignored rows (t == ignore_index) give 0.
// Gradient contract (grad_logits written), from the logits and the saved lse only:
//   dx = row_scale * (exp(x - lse) - q),  q = (1 - s) * onehot(t) + s / V;  0 on ignored rows.
// bf16/f16 compute in f32; the row sums accumulate in f64.
#include <cmath>
#include <limits>
#include <type_traits>

#include "core/kernels/cpu/loops.h"
#include "core/kernels/cpu/nn_kernels.h"
#include "core/kernels/cpu/rows.h"
#include "core/kernels/cpu/vector_math.h"

namespace sy::kernels::cpu {
namespace {

// Targets as i64, checked against [0, V) unless ignored. Runs before any parallel loop so
// the error can be thrown.
std::vector<int64_t> checked_targets(const Tensor& targets, int64_t V, int64_t ignore_index) {
  SY_CHECK(targets.is_contiguous() && (targets.dtype() == DType::kI64 || targets.dtype() == DType::kI32),
           "cross_entropy: targets must be contiguous i32/i64, got ", dtype_name(targets.dtype()));
  std::vector<int64_t> values(targets.numel());
  for (int64_t n = 0; n < targets.numel(); ++n) {
    values[n] = targets.dtype() == DType::kI64 ? targets.data<int64_t>()[n] : targets.data<int32_t>()[n];
    SY_CHECK(values[n] == ignore_index || (values[n] >= 0 && values[n] < V), "cross_entropy: target ",
             values[n], " at row ", n, " is outside [0, V) for V = ", V, " (ignore_index ", ignore_index,
             ")");
  }
  return values;
}

template <typename T>
using stat_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

}  // namespace

void cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                   double label_smoothing, Tensor& losses, Tensor& logsumexp) {
  SY_CHECK(logits.dim() == 2 && logits.is_contiguous() && targets.dim() == 1 &&
               targets.size(0) == logits.size(0),
           "cross_entropy: logits ", ShapeString(logits.shape()), " targets ", ShapeString(targets.shape()));
  const int64_t N = logits.size(0), V = logits.size(1);
  SY_CHECK(losses.is_contiguous() && losses.numel() == N && losses.dtype() == DType::kF64 &&
               logsumexp.is_contiguous() && logsumexp.numel() == N &&
               logsumexp.dtype() == (logits.dtype() == DType::kF64 ? DType::kF64 : DType::kF32),
           "cross_entropy: losses ", ShapeString(losses.shape()), " logsumexp ",
           ShapeString(logsumexp.shape()), " for N = ", N);
  SY_CHECK(V > 0 || N == 0, "cross_entropy: logits ", ShapeString(logits.shape()), " have no classes");
  std::vector<int64_t> t = checked_targets(targets, V, ignore_index);
  dispatch_floating(logits.dtype(), "cross_entropy", [&]<typename T>() {
    const T* x = logits.data<T>();
    double* loss = losses.data<double>();
    auto* lse_out = logsumexp.data<stat_t<T>>();
    for_each_row(N, V, [&](int64_t n) {
      const T* row = x + n * V;
      using V_t = compute_t<T>;
      V_t m = -std::numeric_limits<V_t>::infinity();
      double exp_sum = 0;
      if constexpr (std::is_same_v<T, V_t>) {
        // Vectorized passes over plain f32/f64 rows (a NaN logit makes the sum, so the loss, NaN).
#pragma omp simd reduction(max : m)
        for (int64_t i = 0; i < V; ++i) m = row[i] > m ? row[i] : m;
#pragma omp simd reduction(+ : exp_sum)
        for (int64_t i = 0; i < V; ++i) exp_sum += static_cast<double>(fast_exp(row[i] - m));
      } else {
        for (int64_t i = 0; i < V; ++i) m = std::max<V_t>(m, load<T>(row + i));
        exp_sum = sum_f64(V, [&](int64_t i) { return fast_exp(load<T>(row + i) - m); });
      }
      const double lse = m + std::log(exp_sum);
      lse_out[n] = static_cast<stat_t<T>>(lse);
      if (t[n] == ignore_index) {
        loss[n] = 0;
        return;
      }
      double value = (1 - label_smoothing) * (lse - static_cast<double>(load<T>(row + t[n])));
      if (label_smoothing != 0) {
        const double mean_logit = sum_f64(V, [&](int64_t i) { return load<T>(row + i); }) / static_cast<double>(V);
        value += label_smoothing * (lse - mean_logit);
      }
      loss[n] = value;
    });
  });
}

void cross_entropy_backward(const Tensor& logits, const Tensor& targets, const Tensor& logsumexp,
                            const Tensor& row_scale, int64_t ignore_index, double label_smoothing,
                            Tensor& grad_logits) {
  SY_CHECK(logits.dim() == 2 && logits.is_contiguous() && grad_logits.is_contiguous() &&
               grad_logits.shape() == logits.shape() && grad_logits.dtype() == logits.dtype() &&
               row_scale.dim() == 1 && row_scale.size(0) == logits.size(0) &&
               row_scale.dtype() == DType::kF64 && logsumexp.is_contiguous() &&
               logsumexp.numel() == logits.size(0),
           "cross_entropy backward: logits ", ShapeString(logits.shape()), " grad ",
           ShapeString(grad_logits.shape()), " row_scale ", ShapeString(row_scale.shape()));
  const int64_t N = logits.size(0), V = logits.size(1);
  std::vector<int64_t> t = checked_targets(targets, V, ignore_index);
  dispatch_floating(logits.dtype(), "cross_entropy backward", [&]<typename T>() {
    using V_t = compute_t<T>;
    const T* x = logits.data<T>();
    T* dx = grad_logits.data<T>();
    const auto* lse_in = logsumexp.data<stat_t<T>>();
    const double* scales = row_scale.data<double>();
    const int64_t scale_stride = row_scale.stride(0);
    const V_t uniform = static_cast<V_t>(label_smoothing / static_cast<double>(V));
    for_each_row(N, V, [&](int64_t n) {
      const T* row = x + n * V;
      T* dr = dx + n * V;
      if (t[n] == ignore_index) {
        for (int64_t i = 0; i < V; ++i) store<T>(dr + i, V_t(0));
        return;
      }
      const V_t scale = static_cast<V_t>(scales[n * scale_stride]);
      const V_t lse = static_cast<V_t>(lse_in[n]);
#pragma omp simd
      for (int64_t i = 0; i < V; ++i) store<T>(dr + i, scale * (fast_exp(load<T>(row + i) - lse) - uniform));
      // The target's entry again from the logits (not from the rounded store above).
      const V_t on_target = static_cast<V_t>(1 - label_smoothing);
      store<T>(dr + t[n], scale * (fast_exp(load<T>(row + t[n]) - lse) - uniform - on_target));
    });
  });
}

}  // namespace sy::kernels::cpu
