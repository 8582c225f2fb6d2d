// Balancing losses of the router. The load-balancing loss is E * sum_i f_i * P_i, with f_i
// the fraction of routed slots that went to expert i (counted, no gradient) and P_i the mean
// router score of expert i (gradient flows through P only). Perfectly even routing with even
// scores (f_i = P_i = 1/E) gives exactly 1; any skew that scores follow makes it larger.
// Coefficients are applied by the caller (the MoE layer).
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace sy {

// Micro-batch scope: f and P over the N tokens of the micro-batch.
// scores (N, E), topk_indices (N, K) -> 0-d, in the dtype of scores.
Tensor load_balancing_loss(const Tensor& scores, const Tensor& topk_indices);

// Sequence scope (DeepSeek-V2): the loss per sequence of T tokens, averaged over B sequences.
// scores (B*T, E) with the T tokens of a sequence contiguous, topk_indices (B*T, K).
Tensor sequence_load_balancing_loss(const Tensor& scores, const Tensor& topk_indices, int64_t B);

// Global-batch scope: f from counts summed over every micro-batch of the step so far (and,
// in distributed runs, over data-parallel ranks): tokens_per_expert (E) counts of routed
// slots, total_slots their sum; P from this micro-batch's scores (N, E).
Tensor global_load_balancing_loss(const Tensor& scores, const Tensor& tokens_per_expert, int64_t total_slots);

// Router z-loss: mean over tokens of logsumexp(logits)^2. logits (N, E) -> 0-d.
Tensor router_z_loss(const Tensor& logits);

// Tokens per expert (E) i64 counted from topk_indices (N, K), every entry in [0, E).
Tensor count_tokens_per_expert(const Tensor& topk_indices, int64_t E);

}  // namespace sy
