#include "core/nn/norm.h"

#include "core/ops/norm.h"

namespace sy {

RMSNorm::RMSNorm(int64_t C, double eps) : eps(eps) {
  SY_CHECK(C > 0, "RMSNorm: width ", C, " must be positive");
  weight = register_parameter("weight", Tensor::ones({C}));
}

Tensor RMSNorm::forward(const Tensor& x) const { return rms_norm(x, weight, eps); }

LayerNorm::LayerNorm(int64_t C, double eps, bool with_bias) : eps(eps) {
  SY_CHECK(C > 0, "LayerNorm: width ", C, " must be positive");
  weight = register_parameter("weight", Tensor::ones({C}));
  if (with_bias) bias = register_parameter("bias", Tensor::zeros({C}));
}

Tensor LayerNorm::forward(const Tensor& x) const { return layer_norm(x, weight, bias, eps); }

}  // namespace sy
