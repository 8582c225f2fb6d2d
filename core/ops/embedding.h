// Embedding lookup: ids (...) of i32/i64 into weight (V, C) -> (..., C). The backward is
// a scatter-add of the output gradient rows into a (V, C) gradient.
#pragma once

#include "core/tensor.h"

namespace sy {

Tensor embedding(const Tensor& ids, const Tensor& weight);

}  // namespace sy
