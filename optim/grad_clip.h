// Gradient clipping by the global L2 norm over every gradient (reported before clipping).
// Single process here; the Distributed issue sums the squares over the ranks in one place.
#pragma once

#include <vector>

#include "core/tensor.h"

namespace sy {

// Sum over every defined .grad() of its squared entries, accumulated in f64.
double grad_sum_of_squares(const std::vector<Tensor>& parameters);
// Multiplies every defined .grad() by `factor` in place.
void scale_gradients(const std::vector<Tensor>& parameters, double factor);
// norm = sqrt(grad_sum_of_squares); scales the gradients by max_norm / (norm + 1e-6) (as
// torch.nn.utils.clip_grad_norm_) when norm > max_norm > 0. Returns the norm before clipping.
double clip_grad_norm(const std::vector<Tensor>& parameters, double max_norm);

}  // namespace sy
