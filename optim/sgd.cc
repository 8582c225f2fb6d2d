// SGD with momentum as torch.optim.SGD (dampening 0, no Nesterov; weight decay as L2 added to the
// gradient), with weight decay on parameters of rank >= 2 only. The math is in update_rules.h.
#include "core/autograd/grad_mode.h"
#include "core/ops/elementwise.h"
#include "optim/update_rules.h"

namespace sy::optim_internal {

void sgd_update_cpu(const SgdScalars& s, Tensor& weights, Tensor& momentum, const Tensor& grad) {
  float* w = weights.data<float>();
  float* b = momentum.data<float>();
  const float* g = grad.data<float>();
  const int64_t n = weights.numel();
  // The order of operations follows sgd_update_ops, so both paths round alike.
#pragma omp parallel for simd schedule(static) if (n >= 65536)
  for (int64_t i = 0; i < n; ++i) {
    const float direction = g[i] + w[i] * s.weight_decay;
    const float b_new = b[i] * s.momentum + direction;
    w[i] = w[i] + b_new * s.negative_lr;
    b[i] = b_new;
  }
}

void sgd_update_ops(const SgdScalars& s, Tensor& weights, Tensor& momentum, const Tensor& grad) {
  NoGradGuard no_grad;
  const Tensor direction = s.weight_decay != 0.0f ? grad + weights * static_cast<double>(s.weight_decay)
                                                  : grad;
  momentum.mul_(s.momentum).add_(direction);
  weights.add_(momentum, s.negative_lr);
}

namespace {

class Sgd final : public Optimizer {
 public:
  Sgd(const OptimizerConfig& config, std::vector<std::pair<std::string, Tensor>> parameters)
      : Optimizer(std::move(parameters)) {
    config_ = config;
  }

  void step(double lr) override {
    SgdScalars scalars{.weight_decay = 0.0f,
                       .momentum = static_cast<float>(config_.momentum),
                       .negative_lr = static_cast<float>(-lr)};
    for (auto& [name, parameter] : parameters_) {
      if (!parameter.grad().defined()) continue;
      // Norm weights and biases (rank < 2) take no weight decay.
      scalars.weight_decay = parameter.dim() >= 2 ? static_cast<float>(config_.weight_decay) : 0.0f;
      UpdateTarget target = begin_update(state_, name, parameter, {"momentum"});
      if (target.on_cpu_contiguous) {
        sgd_update_cpu(scalars, target.weights, target.state[0], target.grad);
      } else {
        sgd_update_ops(scalars, target.weights, target.state[0], target.grad);
      }
      finish_update(target, parameter);
    }
    ++step_count_;
  }

 protected:
  std::vector<std::string> state_kinds() const override { return {"momentum"}; }
};

}  // namespace

std::unique_ptr<Optimizer> make_sgd(const OptimizerConfig& config,
                                    std::vector<std::pair<std::string, Tensor>> parameters) {
  return std::make_unique<Sgd>(config, std::move(parameters));
}

}  // namespace sy::optim_internal
