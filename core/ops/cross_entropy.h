// Fused cross-entropy over logits: log-softmax, label smoothing and the loss in one pass,
// its gradient (softmax - target distribution) in another. Never materializes log-probs
// for backward beyond one row-wise log-sum-exp.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace sy {

enum class Reduction { kMean, kSum, kNone };

struct CrossEntropyOptions {
  int64_t ignore_index = -100;   // targets equal to this contribute nothing
  double label_smoothing = 0.0;  // as torch: (1 - s) * nll + s * mean over classes of -log p
  Reduction reduction = Reduction::kMean;  // kMean divides by the non-ignored count
};

// logits (N, V) floating, targets (N) i32/i64 -> 0-d loss (or (N) with kNone).
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, const CrossEntropyOptions& options = {});

}  // namespace sy
