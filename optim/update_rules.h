// Internal to optim/: the per-tensor update rules behind AdamW and SGD, each as a fused CPU loop
// and as a sequence of tensor ops (the path device tensors take), plus the shared plumbing that
// hands a rule an f32 working copy of a parameter and its gradient.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "optim/optimizer.h"

namespace sy::optim_internal {

// One AdamW step's scalars, rounded to f32 once (as PyTorch hands Python floats to f32 kernels).
//   w ← w · decay_factor                       decay_factor = 1 − lr·weight_decay (1 for rank < 2)
//   m ← m · beta1 + g · (1 − beta1)
//   v ← v · beta2 + (g · g) · (1 − beta2)
//   w ← w + (m / (sqrt(v) / bias_correction2_sqrt + eps)) · (−step_size)
//                                              step_size = lr / (1 − beta1^t), bias_correction2_sqrt
//                                              = sqrt(1 − beta2^t), t = the 1-based step
struct AdamWScalars {
  float decay_factor, beta1, one_minus_beta1, beta2, one_minus_beta2, bias_correction2_sqrt, eps,
      negative_step_size;
};
// All four tensors f32, contiguous, same shape, on the CPU.
void adamw_update_cpu(const AdamWScalars& scalars, Tensor& weights, Tensor& exp_avg,
                      Tensor& exp_avg_sq, const Tensor& grad);
// The same arithmetic in the same order through tensor ops (any device, any layout).
void adamw_update_ops(const AdamWScalars& scalars, Tensor& weights, Tensor& exp_avg,
                      Tensor& exp_avg_sq, const Tensor& grad);

// One SGD step (torch.optim.SGD with dampening 0, no Nesterov):
//   d ← g + w · weight_decay    (weight_decay 0 for rank < 2)
//   b ← b · momentum + d        (b starts at zero, so the first step gives b = d as PyTorch's clone)
//   w ← w + b · (−lr)
struct SgdScalars {
  float weight_decay, momentum, negative_lr;
};
void sgd_update_cpu(const SgdScalars& scalars, Tensor& weights, Tensor& momentum, const Tensor& grad);
void sgd_update_ops(const SgdScalars& scalars, Tensor& weights, Tensor& momentum, const Tensor& grad);

// The f32 tensors one update of one parameter works on.
struct UpdateTarget {
  Tensor weights;             // the parameter itself (f32) or its master copy
  Tensor grad;                // f32, on the parameter's device
  std::vector<Tensor> state;  // one per state kind, f32, created as zeros on first use
  bool has_master = false;
  bool on_cpu_contiguous = false;  // every tensor above: the fused loop applies
};
// Gathers (creating lazily) the state of parameter `name` in `state` for the kinds given.
UpdateTarget begin_update(StateDict& state, const std::string& name, const Tensor& parameter,
                          const std::vector<std::string>& kinds);
// Writes a master copy back to its parameter (rounded to the parameter's dtype) and marks the
// parameter as changed.
void finish_update(const UpdateTarget& target, Tensor& parameter);

std::unique_ptr<Optimizer> make_adamw(const OptimizerConfig& config,
                                      std::vector<std::pair<std::string, Tensor>> parameters);
std::unique_ptr<Optimizer> make_sgd(const OptimizerConfig& config,
                                    std::vector<std::pair<std::string, Tensor>> parameters);

}  // namespace sy::optim_internal
