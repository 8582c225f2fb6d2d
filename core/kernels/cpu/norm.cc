// Fused normalizations over the last dim C, one pass over each row for forward and one for
// backward (rows stay in cache between their reads).
//   rms_norm:   r = rsqrt(mean(x^2) + eps),            y = x * r * w
//   layer_norm: mu = mean(x), r = rsqrt(var(x) + eps), xhat = (x - mu) * r, y = xhat * w + b
// Gradient contract (grad_x written, grad_weight / grad_bias accumulated +=):
//   rms_norm:   dx = r * g * w - x * r^3 * mean(g * w * x),   dw += sum_rows g * x * r
//   layer_norm: dx = r * (g * w - mean(g * w) - xhat * mean(g * w * xhat)),
//               dw += sum_rows g * xhat,  db += sum_rows g
// bf16/f16 compute in f32; row statistics accumulate in f64; per-row mean / rstd are saved
// in f64 for f64 inputs and in f32 otherwise. Parameter gradients are summed per row block
// (RowBlocks) in f64 and the blocks added in order, so they do not depend on the threads.
#include <cmath>
#include <type_traits>
#include <vector>

#include "core/kernels/cpu/loops.h"
#include "core/kernels/cpu/nn_kernels.h"
#include "core/kernels/cpu/rows.h"

namespace sy::kernels::cpu {
namespace {

// The type per-row statistics are stored in.
template <typename T>
using stat_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

DType stat_dtype(DType x) { return x == DType::kF64 ? DType::kF64 : DType::kF32; }

void check_rows(const char* op, const Tensor& x, const Tensor& weight, const Tensor& out) {
  SY_CHECK(x.dim() >= 1 && x.is_contiguous() && out.is_contiguous() && weight.is_contiguous() &&
               weight.dim() == 1 && weight.size(0) == x.size(-1) && out.shape() == x.shape() &&
               weight.dtype() == x.dtype() && out.dtype() == x.dtype(),
           op, ": x ", ShapeString(x.shape()), " weight ", ShapeString(weight.shape()), " out ",
           ShapeString(out.shape()));
}

// Runs block(begin_row, end_row, partial) for each RowBlocks block in parallel, where
// partial points at `width` zeroed f64 sums per output parameter vector; then adds the
// blocks' sums, in block order, into each of `grads` (defined ones, dtype of x).
template <typename T, typename Block>
void blocked_parameter_sums(int64_t rows, int64_t row_length, int width,
                            std::initializer_list<Tensor*> grads, Block&& block) {
  RowBlocks blocks(rows, row_length);
  const int64_t stride = width * row_length;
  std::vector<double> partial(blocks.count * stride, 0.0);
#pragma omp parallel for schedule(static) if (blocks.count > 1 && !omp_in_parallel())
  for (int64_t b = 0; b < blocks.count; ++b) {
    block(blocks.begin(b), blocks.end(b, rows), partial.data() + b * stride);
  }
  int k = 0;
  for (Tensor* grad : grads) {
    if (grad->defined()) {
      T* out = grad->data<T>();
      for (int64_t i = 0; i < row_length; ++i) {
        double total = 0;
        for (int64_t b = 0; b < blocks.count; ++b) total += partial[b * stride + k * row_length + i];
        store<T>(out + i, static_cast<double>(load<T>(out + i)) + total);
      }
    }
    ++k;
  }
}

}  // namespace

void rms_norm(const Tensor& x, const Tensor& weight, double eps, Tensor& out, Tensor& rstd) {
  check_rows("rms_norm", x, weight, out);
  const int64_t C = x.size(-1);
  const int64_t rows = C == 0 ? 0 : x.numel() / C;
  SY_CHECK(rstd.is_contiguous() && rstd.numel() == rows && rstd.dtype() == stat_dtype(x.dtype()),
           "rms_norm: rstd ", ShapeString(rstd.shape()), " for ", rows, " rows");
  dispatch_floating(x.dtype(), "rms_norm", [&]<typename T>() {
    using V = compute_t<T>;
    const T* in = x.data<T>();
    const T* w = weight.data<T>();
    T* y = out.data<T>();
    auto* r_out = rstd.data<stat_t<T>>();
    for_each_row(rows, C, [&](int64_t r) {
      const T* xr = in + r * C;
      T* yr = y + r * C;
      const double square_sum = sum_f64(C, [&](int64_t i) {
        const double v = load<T>(xr + i);
        return v * v;
      });
      const double r_value = 1.0 / std::sqrt(square_sum / static_cast<double>(C) + eps);
      r_out[r] = static_cast<stat_t<T>>(r_value);
      const V scale = static_cast<V>(r_value);
      for (int64_t i = 0; i < C; ++i) store<T>(yr + i, load<T>(xr + i) * scale * load<T>(w + i));
    });
  });
}

void rms_norm_backward(const Tensor& grad, const Tensor& x, const Tensor& weight, const Tensor& rstd,
                       Tensor& grad_x, Tensor& grad_weight) {
  check_rows("rms_norm backward", x, weight, grad_x);
  SY_CHECK(grad.is_contiguous() && grad.shape() == x.shape() && grad.dtype() == x.dtype(),
           "rms_norm backward: grad ", ShapeString(grad.shape()), " for x ", ShapeString(x.shape()));
  SY_CHECK(!grad_weight.defined() || (grad_weight.shape() == weight.shape() &&
                                      grad_weight.dtype() == weight.dtype() && grad_weight.is_contiguous()),
           "rms_norm backward: grad_weight ", ShapeString(grad_weight.shape()));
  const int64_t C = x.size(-1);
  const int64_t rows = C == 0 ? 0 : x.numel() / C;
  dispatch_floating(x.dtype(), "rms_norm backward", [&]<typename T>() {
    using V = compute_t<T>;
    const T* in = x.data<T>();
    const T* w = weight.data<T>();
    const T* g = grad.data<T>();
    T* dx = grad_x.data<T>();
    const auto* r_in = rstd.data<stat_t<T>>();
    blocked_parameter_sums<T>(rows, C, 1, {&grad_weight}, [&](int64_t begin, int64_t end, double* dw) {
      for (int64_t r = begin; r < end; ++r) {
        const T* xr = in + r * C;
        const T* gr = g + r * C;
        T* dr = dx + r * C;
        const double r_value = r_in[r];
        const double dot = sum_f64(C, [&](int64_t i) { return load<T>(gr + i) * load<T>(w + i) * load<T>(xr + i); });
        const V scale = static_cast<V>(r_value);
        const V coefficient = static_cast<V>(dot * r_value * r_value * r_value / static_cast<double>(C));
        for (int64_t i = 0; i < C; ++i) {
          const V xi = load<T>(xr + i), gi = load<T>(gr + i);
          store<T>(dr + i, scale * gi * load<T>(w + i) - xi * coefficient);
          dw[i] += static_cast<double>(gi * xi * scale);
        }
      }
    });
  });
}

void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, Tensor& out,
                Tensor& mean, Tensor& rstd) {
  check_rows("layer_norm", x, weight, out);
  SY_CHECK(!bias.defined() || (bias.shape() == weight.shape() && bias.dtype() == x.dtype() &&
                               bias.is_contiguous()),
           "layer_norm: bias ", ShapeString(bias.shape()), " for weight ", ShapeString(weight.shape()));
  const int64_t C = x.size(-1);
  const int64_t rows = C == 0 ? 0 : x.numel() / C;
  for (const Tensor* stat : {&mean, &rstd}) {
    SY_CHECK(stat->is_contiguous() && stat->numel() == rows && stat->dtype() == stat_dtype(x.dtype()),
             "layer_norm: statistics ", ShapeString(stat->shape()), " for ", rows, " rows");
  }
  dispatch_floating(x.dtype(), "layer_norm", [&]<typename T>() {
    using V = compute_t<T>;
    const T* in = x.data<T>();
    const T* w = weight.data<T>();
    const T* b = bias.defined() ? bias.data<T>() : nullptr;
    T* y = out.data<T>();
    auto* mean_out = mean.data<stat_t<T>>();
    auto* r_out = rstd.data<stat_t<T>>();
    for_each_row(rows, C, [&](int64_t r) {
      const T* xr = in + r * C;
      T* yr = y + r * C;
      // Two reads of the row (mean, then centered squares): exact where x has a large mean.
      const double mu = sum_f64(C, [&](int64_t i) { return load<T>(xr + i); }) / static_cast<double>(C);
      const double variance = sum_f64(C, [&](int64_t i) {
                                const double centered = load<T>(xr + i) - mu;
                                return centered * centered;
                              }) / static_cast<double>(C);
      const double r_value = 1.0 / std::sqrt(variance + eps);
      mean_out[r] = static_cast<stat_t<T>>(mu);
      r_out[r] = static_cast<stat_t<T>>(r_value);
      const V mu_v = static_cast<V>(mu), scale = static_cast<V>(r_value);
      for (int64_t i = 0; i < C; ++i) {
        V value = (load<T>(xr + i) - mu_v) * scale * load<T>(w + i);
        if (b) value += load<T>(b + i);
        store<T>(yr + i, value);
      }
    });
  });
}

void layer_norm_backward(const Tensor& grad, const Tensor& x, const Tensor& weight, const Tensor& mean,
                         const Tensor& rstd, Tensor& grad_x, Tensor& grad_weight, Tensor& grad_bias) {
  check_rows("layer_norm backward", x, weight, grad_x);
  SY_CHECK(grad.is_contiguous() && grad.shape() == x.shape() && grad.dtype() == x.dtype(),
           "layer_norm backward: grad ", ShapeString(grad.shape()), " for x ", ShapeString(x.shape()));
  for (const Tensor* parameter_grad : {&grad_weight, &grad_bias}) {
    SY_CHECK(!parameter_grad->defined() ||
                 (parameter_grad->shape() == weight.shape() && parameter_grad->dtype() == weight.dtype() &&
                  parameter_grad->is_contiguous()),
             "layer_norm backward: parameter gradient ", ShapeString(parameter_grad->shape()));
  }
  const int64_t C = x.size(-1);
  const int64_t rows = C == 0 ? 0 : x.numel() / C;
  dispatch_floating(x.dtype(), "layer_norm backward", [&]<typename T>() {
    using V = compute_t<T>;
    const T* in = x.data<T>();
    const T* w = weight.data<T>();
    const T* g = grad.data<T>();
    T* dx = grad_x.data<T>();
    const auto* mean_in = mean.data<stat_t<T>>();
    const auto* r_in = rstd.data<stat_t<T>>();
    blocked_parameter_sums<T>(
        rows, C, 2, {&grad_weight, &grad_bias}, [&](int64_t begin, int64_t end, double* sums) {
          double* dw = sums;
          double* db = sums + C;
          for (int64_t r = begin; r < end; ++r) {
            const T* xr = in + r * C;
            const T* gr = g + r * C;
            T* dr = dx + r * C;
            const V mu = static_cast<V>(mean_in[r]), scale = static_cast<V>(r_in[r]);
            auto xhat = [&](int64_t i) { return (load<T>(xr + i) - mu) * scale; };
            const V mean_gw = static_cast<V>(
                sum_f64(C, [&](int64_t i) { return load<T>(gr + i) * load<T>(w + i); }) / static_cast<double>(C));
            const V mean_gw_xhat = static_cast<V>(
                sum_f64(C, [&](int64_t i) { return load<T>(gr + i) * load<T>(w + i) * xhat(i); }) /
                static_cast<double>(C));
            for (int64_t i = 0; i < C; ++i) {
              const V gi = load<T>(gr + i), xh = xhat(i);
              store<T>(dr + i, scale * (gi * load<T>(w + i) - mean_gw - xh * mean_gw_xhat));
              dw[i] += static_cast<double>(gi * xh);
              db[i] += static_cast<double>(gi);
            }
          }
        });
  });
}

}  // namespace sy::kernels::cpu
