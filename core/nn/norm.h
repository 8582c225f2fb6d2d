// Normalization modules over the last dimension: RMSNorm (Llama) and LayerNorm.
#pragma once

#include "core/nn/module.h"

namespace sy {

// x * rsqrt(mean(x^2) + eps) * weight; weight starts at ones.
class RMSNorm : public Module {
 public:
  explicit RMSNorm(int64_t C, double eps = 1e-6);
  Tensor forward(const Tensor& x) const;

  Tensor weight;  // (C)
  double eps;
};

// (x - mean) * rsqrt(var + eps) * weight + bias; weight ones, bias zeros.
class LayerNorm : public Module {
 public:
  explicit LayerNorm(int64_t C, double eps = 1e-5, bool bias = true);
  Tensor forward(const Tensor& x) const;

  Tensor weight;  // (C)
  Tensor bias;    // (C), or undefined
  double eps;
};

}  // namespace sy
