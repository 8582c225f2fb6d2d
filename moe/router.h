// The router: token -> expert scores, top-k selection (optionally group-limited and with the
// aux-loss-free expert bias), and routing weights. Weights and logits are f32 whatever the
// compute dtype.
//
// Conventions (Megatron-Core / Hugging Face), with s = the logits (N, E):
//   softmax, pre_softmax (DeepSeek-V2, Qwen2-MoE): p = softmax(s); the top-k of p (+ bias)
//     are chosen; weights = p at the chosen experts, divided by their sum if `renormalize`.
//   softmax, !pre_softmax (Mixtral, the default): the top-k of s (+ bias) are chosen;
//     weights = softmax over the K chosen logits (already normalized; `renormalize` is moot).
//   sigmoid (DeepSeek-V3): p = sigmoid(s); the top-k of p + bias are chosen; weights = p at
//     the chosen experts divided by their sum (+1e-20, as HF and Megatron).
//   Group-limited routing (num_groups > 1): the experts form num_groups contiguous groups; a
//     group's score is the sum of its two best selection scores (its best one for groups of
//     one expert); only the group_topk best groups stay eligible for the top-k.
//   The expert bias moves the selection only, never the weights. routing_scale multiplies the
//   final weights. Ties pick the lower expert index.
// The scores the balancing losses see (RoutingOutput::scores) are softmax(s) for softmax
// routing (both orders), and for sigmoid routing sigmoid(s) normalized to sum 1 per token, as
// DeepSeek-V3's sequence-wise loss and Megatron's aux-loss scores do: P_i is then a fraction.
#pragma once

#include <vector>

#include "core/nn/module.h"
#include "core/random.h"
#include "core/tensor.h"
#include "moe/config.h"

namespace sy {

struct RoutingOutput {
  Tensor logits;        // (N, E) f32
  Tensor scores;        // (N, E) probabilities for the aux losses (see above); rows sum to 1
  Tensor topk_indices;  // (N, K) i64, chosen experts (bias and groups affect only this)
  Tensor topk_weights;  // (N, K) routing weights after renormalization and scaling
};

// Everything after the logits: scores, selection and weights, differentiable in `logits`
// (any floating dtype; the results keep it). expert_bias (E) is used iff config.expert_bias.
RoutingOutput route(const Tensor& logits, const MoeConfig& config, const Tensor& expert_bias = Tensor());

// Registered as `gate`: parameter `gate.weight` (E, C), buffer `gate.expert_bias` (E) when
// moe.expert_bias is on (persistent: it is saved with the model).
class Router : public Module {
 public:
  // weight ~ normal(0, init_std) from `generator` (the default generator when null).
  Router(const MoeConfig& config, int64_t hidden_size, double init_std = 0.02, Generator* generator = nullptr);

  // x (N, C) any floating dtype -> routing for N tokens; logits = f32(x) @ weight^T.
  // Input jitter (x * U[1-eps, 1+eps]) applies in training mode only.
  RoutingOutput forward(const Tensor& x);

  // Aux-loss-free balancing, after each optimizer step: bias_i += rate * sign(mean - load_i)
  // with load = the step's tokens per expert (E), any dtype. Not recorded by autograd.
  void update_expert_bias(const Tensor& tokens_per_expert);

  const Tensor& weight() const { return weight_; }
  const Tensor& expert_bias() const { return expert_bias_; }

 private:
  MoeConfig config_;
  Tensor weight_;       // (E, C) f32
  Tensor expert_bias_;  // (E) f32, selection only; undefined unless config.expert_bias
};

}  // namespace sy
