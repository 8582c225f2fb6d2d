// AdamW as torch.optim.AdamW (decoupled weight decay, bias-corrected moments, eps outside the
// square root), with weight decay on parameters of rank >= 2 only. The math is in update_rules.h.
#include <cmath>

#include "core/autograd/grad_mode.h"
#include "core/ops/elementwise.h"
#include "optim/update_rules.h"

namespace sy::optim_internal {

void adamw_update_cpu(const AdamWScalars& s, Tensor& weights, Tensor& exp_avg, Tensor& exp_avg_sq,
                      const Tensor& grad) {
  float* w = weights.data<float>();
  float* m = exp_avg.data<float>();
  float* v = exp_avg_sq.data<float>();
  const float* g = grad.data<float>();
  const int64_t n = weights.numel();
  // The order of operations follows adamw_update_ops, so both paths round alike.
#pragma omp parallel for simd schedule(static) if (n >= 65536)
  for (int64_t i = 0; i < n; ++i) {
    const float decayed = w[i] * s.decay_factor;
    const float m_new = m[i] * s.beta1 + g[i] * s.one_minus_beta1;
    const float v_new = v[i] * s.beta2 + (g[i] * g[i]) * s.one_minus_beta2;
    const float denominator = std::sqrt(v_new) / s.bias_correction2_sqrt + s.eps;
    w[i] = decayed + (m_new / denominator) * s.negative_step_size;
    m[i] = m_new;
    v[i] = v_new;
  }
}

void adamw_update_ops(const AdamWScalars& s, Tensor& weights, Tensor& exp_avg, Tensor& exp_avg_sq,
                      const Tensor& grad) {
  NoGradGuard no_grad;
  if (s.decay_factor != 1.0f) weights.mul_(s.decay_factor);
  exp_avg.mul_(s.beta1).add_(grad, s.one_minus_beta1);
  exp_avg_sq.mul_(s.beta2).add_(grad * grad, s.one_minus_beta2);
  const Tensor denominator = sqrt(exp_avg_sq) / static_cast<double>(s.bias_correction2_sqrt) +
                             static_cast<double>(s.eps);
  weights.add_(exp_avg / denominator, s.negative_step_size);
}

namespace {

class AdamW final : public Optimizer {
 public:
  AdamW(const OptimizerConfig& config, std::vector<std::pair<std::string, Tensor>> parameters)
      : Optimizer(std::move(parameters)) {
    config_ = config;
  }

  void step(double lr) override {
    const double t = static_cast<double>(step_count_ + 1);
    const double bias_correction1 = 1.0 - std::pow(config_.beta1, t);
    const double bias_correction2 = 1.0 - std::pow(config_.beta2, t);
    AdamWScalars scalars{
        .decay_factor = 1.0f,
        .beta1 = static_cast<float>(config_.beta1),
        .one_minus_beta1 = static_cast<float>(1.0 - config_.beta1),
        .beta2 = static_cast<float>(config_.beta2),
        .one_minus_beta2 = static_cast<float>(1.0 - config_.beta2),
        .bias_correction2_sqrt = static_cast<float>(std::sqrt(bias_correction2)),
        .eps = static_cast<float>(config_.eps),
        .negative_step_size = static_cast<float>(-(lr / bias_correction1)),
    };
    const float decay_factor = static_cast<float>(1.0 - lr * config_.weight_decay);
    for (auto& [name, parameter] : parameters_) {
      if (!parameter.grad().defined()) continue;
      // Norm weights and biases (rank < 2) take no weight decay.
      scalars.decay_factor = parameter.dim() >= 2 ? decay_factor : 1.0f;
      UpdateTarget target = begin_update(state_, name, parameter, state_kinds());
      if (target.on_cpu_contiguous) {
        adamw_update_cpu(scalars, target.weights, target.state[0], target.state[1], target.grad);
      } else {
        adamw_update_ops(scalars, target.weights, target.state[0], target.state[1], target.grad);
      }
      finish_update(target, parameter);
    }
    ++step_count_;
  }

 protected:
  std::vector<std::string> state_kinds() const override { return {"exp_avg", "exp_avg_sq"}; }
};

}  // namespace

std::unique_ptr<Optimizer> make_adamw(const OptimizerConfig& config,
                                      std::vector<std::pair<std::string, Tensor>> parameters) {
  return std::make_unique<AdamW>(config, std::move(parameters));
}

}  // namespace sy::optim_internal
