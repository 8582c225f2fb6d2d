// Optimizers over a model's named parameters: AdamW (decoupled weight decay) and SGD with
// momentum, with f32 master weights and f32 state whatever the parameter dtype. Weight decay
// skips every parameter of rank < 2 (norm weights, biases); buffers such as the router's
// expert bias are not parameters and never reach an optimizer.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "core/nn/module.h"
#include "core/tensor.h"

namespace sy {

enum class OptimizerType { kAdamW, kSgd };

struct OptimizerConfig {
  OptimizerType type = OptimizerType::kAdamW;
  double lr = 3e-4;             // peak learning rate (the schedule scales it)
  double min_lr_ratio = 0.1;    // the schedule's floor, as a fraction of lr
  double weight_decay = 0.1;    // decoupled (AdamW); L2 added to the gradient for SGD
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double momentum = 0.9;        // SGD only
  double grad_clip = 1.0;       // max global gradient norm; 0 disables clipping
  absl::Status validate() const;  // names the key ("optimizer.beta2 must be in [0, 1), got 1.5")
  bool operator==(const OptimizerConfig&) const = default;
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  // Updates every parameter from its .grad() (a parameter without a gradient is skipped
  // and its state left alone) at learning rate `lr`, then counts the step.
  virtual void step(double lr) = 0;
  // Drops every parameter's gradient (undefined .grad()).
  void zero_grad();
  int64_t step_count() const { return step_count_; }
  const std::vector<std::pair<std::string, Tensor>>& parameters() const { return parameters_; }

  // Optimizer state under names "<state>.<parameter name>" (e.g. "exp_avg.layers.0.mlp.gate.weight",
  // "exp_avg_sq.…", "momentum.…", "master.…" for non-f32 parameters) plus "step" (0-d i64).
  // Every name is present from the start (zeros, or the parameter itself for a master copy, where
  // no step has touched it yet); entries share storage with the optimizer, as Module::state_dict.
  StateDict state_dict() const;
  // Fails, changing nothing, on a missing or unexpected name or a shape mismatch, naming the
  // key and both shapes.
  absl::Status load_state_dict(const StateDict& state);

 protected:
  explicit Optimizer(std::vector<std::pair<std::string, Tensor>> parameters);
  // The per-parameter state the subclass keeps ("exp_avg", "exp_avg_sq"); "master" comes on top
  // for every parameter that is not f32.
  virtual std::vector<std::string> state_kinds() const = 0;
  std::vector<std::pair<std::string, Tensor>> parameters_;
  StateDict state_;  // created lazily or at construction by the subclass, f32
  int64_t step_count_ = 0;
  OptimizerConfig config_;
  friend std::unique_ptr<Optimizer> make_optimizer(const OptimizerConfig&,
                                                   std::vector<std::pair<std::string, Tensor>>);
};

// The optimizer the config names over `parameters` (a model's named_parameters()).
std::unique_ptr<Optimizer> make_optimizer(const OptimizerConfig& config,
                                          std::vector<std::pair<std::string, Tensor>> parameters);

}  // namespace sy
