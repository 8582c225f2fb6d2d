// Random tensors and dropout from the Philox generator (core/random.h): the same seed and
// offset give the same values on the CPU and on CUDA. A null generator means the default one.
#pragma once

#include "core/random.h"
#include "core/tensor.h"

namespace sy {

Tensor rand(const Shape& shape, DType dtype = DType::kF32, Generator* generator = nullptr);   // U[0, 1)
Tensor randn(const Shape& shape, DType dtype = DType::kF32, Generator* generator = nullptr);  // N(0, 1)
// N(mean, std^2) values (the same draw as normal_ on a fresh tensor): initial weights.
Tensor normal(const Shape& shape, double mean, double std, DType dtype = DType::kF32,
              Generator* generator = nullptr);
// In-place initializers (not recorded by autograd).
Tensor& normal_(Tensor& x, double mean, double std, Generator* generator = nullptr);
Tensor& uniform_(Tensor& x, double low, double high, Generator* generator = nullptr);
// Zeroes each element with probability p and scales the rest by 1 / (1 - p) when training.
Tensor dropout(const Tensor& x, double p, bool training = true, Generator* generator = nullptr);

}  // namespace sy
