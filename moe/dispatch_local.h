// Local token permutation: the routed (token, expert) slots are sorted into expert order
// (stable by token index), optionally capped at a capacity per expert, run through the
// experts, and un-permuted with their routing weights. The Distributed issue's all-to-all
// dispatcher wraps exactly this: permute -> exchange -> experts -> exchange -> unpermute.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "moe/config.h"

namespace sy {

struct DispatchPlan {
  Tensor token_index;   // (M) i64: source token of each permuted row (expert-major, stable), -1 for padding
  Tensor slot_index;    // (M) i64: flat index (token * K + k) of the routed slot, -1 for padding
  std::vector<int64_t> tokens_per_expert;  // (E) rows per expert, padding included
  int64_t dropped = 0;  // routed slots dropped by the capacity
  int64_t padded = 0;   // padding rows added by pad_to_capacity
};

// capacity_factor 0: dropless. Otherwise capacity = ceil(capacity_factor * N * K / E)
// per expert; over-capacity slots are dropped by policy (kProbs keeps the highest weights,
// kPosition the earliest tokens); pad_to_capacity pads every expert to exactly capacity.
// topk_indices (N, K) i64, topk_weights (N, K).
DispatchPlan plan_dispatch(const Tensor& topk_indices, const Tensor& topk_weights, int64_t E,
                           double capacity_factor, DropPolicy policy, bool pad_to_capacity);

// x (N, C) -> (M, C) rows in plan order (padding rows are zeros). Differentiable.
Tensor permute_tokens(const Tensor& x, const DispatchPlan& plan);

// y (M, C) expert outputs -> (N, C): out[t] = sum over t's kept slots of weight * y[row].
// topk_weights (N, K) differentiable (the router gets its gradient here).
Tensor unpermute_tokens(const Tensor& y, const DispatchPlan& plan, const Tensor& topk_weights, int64_t N);

}  // namespace sy
