// Grouped matrix product for experts: rows of x come grouped by expert (counts rows for
// expert 0, then expert 1, ...), and each group is multiplied by its own matrix. No padding,
// no per-expert tensors: one op over variable row counts.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace sy {

// x (N, Cin), w (E, Cin, Cout), counts (E) summing to N -> (N, Cout) with
// out[rows of group e] = x[rows of group e] @ w[e].
// Backward: dx = grouped_matmul(dout, w^T) per group; dw[e] = x_e^T @ dout_e.
Tensor grouped_matmul(const Tensor& x, const Tensor& w, const std::vector<int64_t>& counts);

}  // namespace sy
