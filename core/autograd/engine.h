// Runs the backward pass: the graph reachable from the roots in dependency order,
// gradients summed per node before it runs, leaves accumulated into .grad().
#pragma once

#include <vector>

#include "core/tensor.h"

namespace sy {

// Backpropagates from `roots` seeded with `grads` (undefined: ones for a scalar root).
void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
                  bool retain_graph);

}  // namespace sy
