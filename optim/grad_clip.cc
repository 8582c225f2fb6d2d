// Global-norm gradient clipping. The CPU sum of squares runs over fixed chunks whose partial sums
// are added in order, so the norm is the same bits whatever the number of threads.
#include "optim/grad_clip.h"

#include <cmath>

#include "core/autograd/grad_mode.h"
#include "core/kernels/cpu/loops.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"

namespace sy {

namespace {

constexpr int64_t kChunk = 16384;  // elements per partial sum

double cpu_sum_of_squares(const Tensor& grad) {
  const Tensor dense = grad.contiguous();
  const int64_t n = dense.numel();
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> partial(static_cast<size_t>(chunks), 0.0);
  kernels::cpu::dispatch_floating(dense.dtype(), "grad_sum_of_squares", [&]<typename T>() {
    const T* data = dense.data<T>();
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t end = std::min(n, (c + 1) * kChunk);
      double sum = 0.0;
      for (int64_t i = c * kChunk; i < end; ++i) {
        const double value = static_cast<double>(kernels::cpu::load<T>(data + i));
        sum += value * value;
      }
      partial[static_cast<size_t>(c)] = sum;
    }
  });
  double total = 0.0;
  for (double sum : partial) total += sum;
  return total;
}

void cpu_scale(Tensor& grad, double factor) {
  kernels::cpu::dispatch_floating(grad.dtype(), "scale_gradients", [&]<typename T>() {
    using V = kernels::cpu::compute_t<T>;
    T* data = grad.data<T>();
    const V scale = static_cast<V>(factor);
    const int64_t n = grad.numel();
#pragma omp parallel for schedule(static) if (n >= 65536)
    for (int64_t i = 0; i < n; ++i) {
      kernels::cpu::store<T>(data + i, kernels::cpu::load<T>(data + i) * scale);
    }
  });
  grad.bump_version();
}

}  // namespace

double grad_sum_of_squares(const std::vector<Tensor>& parameters) {
  NoGradGuard no_grad;
  double total = 0.0;
  for (const Tensor& parameter : parameters) {
    const Tensor grad = parameter.grad();
    if (!grad.defined()) continue;
    if (grad.device().is_cpu()) {
      total += cpu_sum_of_squares(grad.detach());
    } else {
      const Tensor wide = grad.detach().to(DType::kF64);
      total += sum(wide * wide).item();
    }
  }
  return total;
}

void scale_gradients(const std::vector<Tensor>& parameters, double factor) {
  NoGradGuard no_grad;
  for (const Tensor& parameter : parameters) {
    Tensor grad = parameter.grad();
    if (!grad.defined()) continue;
    if (grad.device().is_cpu() && grad.is_contiguous()) {
      cpu_scale(grad, factor);
    } else if (grad.dtype() == DType::kF32 || grad.dtype() == DType::kF64) {
      grad.mul_(factor);
    } else {
      // In f32, as the CPU loop: the factor itself rounded to bf16 would be off by up to 0.4%.
      grad.copy_(grad.to(DType::kF32) * factor);
    }
  }
}

double clip_grad_norm(const std::vector<Tensor>& parameters, double max_norm) {
  const double norm = std::sqrt(grad_sum_of_squares(parameters));
  if (max_norm > 0 && norm > max_norm) scale_gradients(parameters, max_norm / (norm + 1e-6));
  return norm;
}

}  // namespace sy
