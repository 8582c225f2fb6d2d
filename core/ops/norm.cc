// rms_norm and layer_norm: one fused kernel each way; backward works from the input and the
// saved per-row statistics (rstd, and mean for layer_norm).
#include "core/ops/norm.h"

#include "core/autograd/node.h"
#include "core/kernels/cpu/nn_kernels.h"
#include "core/ops/dispatch.h"

namespace sy {
namespace {

DType statistics_dtype(DType x) { return x == DType::kF64 ? DType::kF64 : DType::kF32; }

Shape row_shape(const Tensor& x) { return Shape(x.shape().begin(), x.shape().end() - 1); }

void check_parameter(const char* op, const char* what, const Tensor& x, const Tensor& parameter) {
  SY_CHECK(parameter.dim() == 1 && parameter.size(0) == x.size(-1), op, ": ", what, " ",
           ShapeString(parameter.shape()), " for x ", ShapeString(x.shape()), " (expected (C) = (",
           x.size(-1), "))");
  require_same_device(op, x, parameter);
}

// The parameter in x's dtype (a cast the autograd graph sees, so its gradient comes back in
// the parameter's own dtype).
Tensor as_dtype_of(const Tensor& parameter, const Tensor& x) {
  return parameter.dtype() == x.dtype() ? parameter : parameter.to(x.dtype());
}

}  // namespace

Tensor rms_norm(const Tensor& input, const Tensor& weight_input, double eps) {
  SY_CHECK(input.dim() >= 1 && is_floating(input.dtype()), "rms_norm: x ", ShapeString(input.shape()), " ",
           dtype_name(input.dtype()), " (expected floating (..., C))");
  check_parameter("rms_norm", "weight", input, weight_input);
  const Tensor weight = as_dtype_of(weight_input, input);
  const Tensor x = input.detach().contiguous();
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor rstd = Tensor::empty(row_shape(x), statistics_dtype(x.dtype()), x.device());
  if (x.device().is_cpu()) {
    kernels::cpu::rms_norm(x, weight.detach().contiguous(), eps, out, rstd);
  } else {
    SY_CUDA_KERNEL("rms_norm", kernels::cuda::rms_norm(x, weight.detach().contiguous(), eps, out, rstd));
  }
  record("RmsNormBackward", {input, weight}, {out},
         [saved_x = SavedTensor(x), saved_weight = SavedTensor(weight.detach()),
          saved_rstd = SavedTensor(rstd)](const std::vector<Tensor>& g) {
           Tensor x = saved_x.get(), weight = saved_weight.get().contiguous();
           require_cpu("rms_norm backward", x);
           Tensor grad = g[0].to(x.dtype()).contiguous();
           Tensor grad_x = Tensor::empty(x.shape(), x.dtype());
           Tensor grad_weight = Tensor::zeros(weight.shape(), weight.dtype());
           kernels::cpu::rms_norm_backward(grad, x, weight, saved_rstd.get(), grad_x, grad_weight);
           return std::vector<Tensor>{grad_x, grad_weight};
         });
  return out;
}

Tensor layer_norm(const Tensor& input, const Tensor& weight_input, const Tensor& bias_input, double eps) {
  SY_CHECK(input.dim() >= 1 && is_floating(input.dtype()), "layer_norm: x ", ShapeString(input.shape()),
           " ", dtype_name(input.dtype()), " (expected floating (..., C))");
  check_parameter("layer_norm", "weight", input, weight_input);
  if (bias_input.defined()) check_parameter("layer_norm", "bias", input, bias_input);
  require_cpu("layer_norm", input);
  const Tensor weight = as_dtype_of(weight_input, input);
  const Tensor bias = bias_input.defined() ? as_dtype_of(bias_input, input) : Tensor();
  const Tensor x = input.detach().contiguous();
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  Tensor mean = Tensor::empty(row_shape(x), statistics_dtype(x.dtype()));
  Tensor rstd = Tensor::empty(row_shape(x), statistics_dtype(x.dtype()));
  kernels::cpu::layer_norm(x, weight.detach().contiguous(), bias.defined() ? bias.detach().contiguous() : Tensor(),
                           eps, out, mean, rstd);
  record("LayerNormBackward", {input, weight, bias}, {out},
         [saved_x = SavedTensor(x), saved_weight = SavedTensor(weight.detach()), saved_mean = SavedTensor(mean),
          saved_rstd = SavedTensor(rstd), has_bias = bias.defined()](const std::vector<Tensor>& g) {
           Tensor x = saved_x.get(), weight = saved_weight.get().contiguous();
           Tensor grad = g[0].to(x.dtype()).contiguous();
           Tensor grad_x = Tensor::empty(x.shape(), x.dtype());
           Tensor grad_weight = Tensor::zeros(weight.shape(), weight.dtype());
           Tensor grad_bias = has_bias ? Tensor::zeros(weight.shape(), weight.dtype()) : Tensor();
           kernels::cpu::layer_norm_backward(grad, x, weight, saved_mean.get(), saved_rstd.get(), grad_x,
                                             grad_weight, grad_bias);
           return std::vector<Tensor>{grad_x, grad_weight, grad_bias};
         });
  return out;
}

}  // namespace sy

