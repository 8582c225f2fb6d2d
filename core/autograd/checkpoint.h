// Activation recomputation: checkpoint(fn, inputs) keeps only the inputs, and reruns fn
// during backward with the random generator state it had in the forward pass (so dropout
// masks match), giving the same gradients as the plain path with less memory held.
#pragma once

#include <functional>
#include <vector>

#include "core/tensor.h"

namespace sy {

using CheckpointFunction = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;

std::vector<Tensor> checkpoint(const CheckpointFunction& function,
                               const std::vector<Tensor>& inputs);

}  // namespace sy
