// The router: token -> expert scores, top-k selection (optionally group-limited and with the
// aux-loss-free expert bias), and routing weights. Weights and logits are f32 whatever the
// compute dtype.
#pragma once

#include <vector>

#include "core/nn/module.h"
#include "core/tensor.h"
#include "moe/config.h"

namespace sy {

struct RoutingOutput {
  Tensor logits;        // (N, E) f32
  Tensor scores;        // (N, E) softmax or sigmoid of the logits (what the aux losses use)
  Tensor topk_indices;  // (N, K) i64, chosen experts (bias and groups affect only this)
  Tensor topk_weights;  // (N, K) f32 routing weights after renormalization and scaling
};

// Registered as `gate`: parameter `gate.weight` (E, C), buffer `gate.expert_bias` (E) when
// moe.expert_bias is on.
class Router : public Module {
 public:
  Router(const MoeConfig& config, int64_t hidden_size);

  // x (N, C) -> routing for N tokens. Input jitter applies in training mode only.
  RoutingOutput forward(const Tensor& x);

  // Aux-loss-free balancing, after each optimizer step: bias_i += rate * sign(mean - load_i)
  // with load = the step's tokens per expert (E).
  void update_expert_bias(const Tensor& tokens_per_expert);

  const Tensor& weight() const { return weight_; }
  const Tensor& expert_bias() const { return expert_bias_; }

 private:
  MoeConfig config_;
  Tensor weight_;       // (E, C) f32
  Tensor expert_bias_;  // (E) f32, selection only
};

}  // namespace sy
