// Softmax over contiguous rows, and its gradient from the saved output.
//   softmax:      y = exp(x - m) / s,         s = sum exp(x - m), m = max x
//   log_softmax:  y = (x - m) - log(s)
// Gradient contract (grad_x written):
//   softmax:      dx = y * (g - sum(g * y))
//   log_softmax:  dx = g - exp(y) * sum(g)
// bf16/f16 compute in f32; row sums accumulate in f64.
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "core/kernels/cpu/loops.h"
#include "core/kernels/cpu/nn_kernels.h"
#include "core/kernels/cpu/rows.h"
#include "core/kernels/cpu/vector_math.h"

namespace sy::kernels::cpu {

void softmax_rows(const Tensor& x, int64_t row_length, bool log, Tensor& out) {
  SY_CHECK(x.is_contiguous() && out.is_contiguous() && x.dtype() == out.dtype() &&
               x.numel() == out.numel(),
           "softmax_rows: x ", ShapeString(x.shape()), " out ", ShapeString(out.shape()));
  if (x.numel() == 0) return;
  const int64_t rows = x.numel() / row_length;
  dispatch_floating(x.dtype(), "softmax", [&]<typename T>() {
    using V = compute_t<T>;
    const T* in = x.data<T>();
    T* result = out.data<T>();
    for_each_row(rows, row_length, [&](int64_t r) {
      const T* row = in + r * row_length;
      T* y = result + r * row_length;
      V m = -std::numeric_limits<V>::infinity();
      if constexpr (std::is_same_v<T, V>) {
        if (!log) {
          // Vectorized passes: max, exp(x - m) stored once, its f64 sum, the scale. A NaN
          // never wins the max, but exp(NaN - m) is NaN and so is the sum: the row is NaN.
#pragma omp simd reduction(max : m)
          for (int64_t i = 0; i < row_length; ++i) m = row[i] > m ? row[i] : m;
#pragma omp simd
          for (int64_t i = 0; i < row_length; ++i) y[i] = fast_exp(row[i] - m);
          double total = 0;
#pragma omp simd reduction(+ : total)
          for (int64_t i = 0; i < row_length; ++i) total += static_cast<double>(y[i]);
          const V inverse = static_cast<V>(1.0 / total);
#pragma omp simd
          for (int64_t i = 0; i < row_length; ++i) y[i] *= inverse;
          return;
        }
      }
      for (int64_t i = 0; i < row_length; ++i) m = std::max(m, load<T>(row + i));
      const double s = sum_f64(row_length, [&](int64_t i) { return fast_exp(load<T>(row + i) - m); });
      if (log) {
        // (x - m) first: exact for x near m, where log-probs matter most.
        const V log_s = static_cast<V>(std::log(s));
        for (int64_t i = 0; i < row_length; ++i) store<T>(y + i, (load<T>(row + i) - m) - log_s);
      } else {
        const V inverse = static_cast<V>(1.0 / s);
        for (int64_t i = 0; i < row_length; ++i) store<T>(y + i, fast_exp(load<T>(row + i) - m) * inverse);
      }
    });
  });
}

void softmax_backward_rows(const Tensor& y, const Tensor& grad, int64_t row_length, bool log,
                           Tensor& grad_x) {
  SY_CHECK(y.is_contiguous() && grad.is_contiguous() && grad_x.is_contiguous() &&
               y.dtype() == grad.dtype() && y.dtype() == grad_x.dtype() && y.numel() == grad.numel() &&
               y.numel() == grad_x.numel(),
           "softmax_backward_rows: y ", ShapeString(y.shape()), " grad ", ShapeString(grad.shape()));
  if (y.numel() == 0) return;
  const int64_t rows = y.numel() / row_length;
  dispatch_floating(y.dtype(), "softmax backward", [&]<typename T>() {
    using V = compute_t<T>;
    const T* out = y.data<T>();
    const T* upstream = grad.data<T>();
    T* dx = grad_x.data<T>();
    for_each_row(rows, row_length, [&](int64_t r) {
      const T* yr = out + r * row_length;
      const T* gr = upstream + r * row_length;
      T* dr = dx + r * row_length;
      if (log) {
        const V total = static_cast<V>(sum_f64(row_length, [&](int64_t i) { return load<T>(gr + i); }));
        for (int64_t i = 0; i < row_length; ++i) {
          store<T>(dr + i, load<T>(gr + i) - fast_exp(load<T>(yr + i)) * total);
        }
      } else {
        const V dot = static_cast<V>(
            sum_f64(row_length, [&](int64_t i) { return load<T>(gr + i) * load<T>(yr + i); }));
        for (int64_t i = 0; i < row_length; ++i) store<T>(dr + i, load<T>(yr + i) * (load<T>(gr + i) - dot));
      }
    });
  });
}

}  // namespace sy::kernels::cpu
