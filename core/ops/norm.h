// Fused normalizations over the last dimension. x (..., C), weight and bias (C).
#pragma once

#include "core/tensor.h"

namespace sy {

// x * rsqrt(mean(x^2) + eps) * weight
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps = 1e-6);
// (x - mean) * rsqrt(var + eps) * weight + bias (biased variance, as torch); bias may be undefined.
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);

}  // namespace sy
