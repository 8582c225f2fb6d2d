// softmax and log_softmax along a dimension (computed with the row max subtracted).
#pragma once

#include "core/tensor.h"

namespace sy {

Tensor softmax(const Tensor& x, int64_t dim = -1);
Tensor log_softmax(const Tensor& x, int64_t dim = -1);

}  // namespace sy
