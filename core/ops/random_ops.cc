// Random fills and dropout. Every call reserves numel values of the generator's stream
// (Generator::reserve), so consecutive calls draw different values and restoring a saved
// PhiloxState replays them. Which stream index each element reads: index_kernels.h.
#include "core/ops/random_ops.h"

#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/kernels/cpu/index_kernels.h"
#include "core/ops/dispatch.h"

namespace sy {
namespace {

namespace cpu = kernels::cpu;

Generator& generator_or_default(Generator* generator) {
  return generator != nullptr ? *generator : default_generator();
}

PhiloxState reserve_for(const Shape& shape, Generator* generator) {
  return generator_or_default(generator).reserve(static_cast<uint64_t>(shape_numel(shape)));
}

// Fills x in place through `fill`, which writes a contiguous tensor of x's shape and dtype.
template <typename Fill>
Tensor& fill_in_place(Tensor& x, Fill&& fill) {
  if (x.is_contiguous()) {
    Tensor target = x.detach();
    fill(target);
    x.bump_version();
    return x;
  }
  Tensor values = Tensor::empty(x.shape(), x.dtype(), x.device());
  fill(values);
  NoGradGuard no_grad;  // an initializer, like torch.nn.init, may fill a leaf that requires grad
  x.copy_(values);
  return x;
}

}  // namespace

Tensor rand(const Shape& shape, DType dtype, Generator* generator) {
  SY_CHECK(is_floating(dtype), "rand: dtype must be floating, got ", dtype_name(dtype));
  Tensor out = Tensor::empty(shape, dtype);
  cpu::uniform(reserve_for(shape, generator), 0.0, 1.0, out);
  return out;
}

Tensor randn(const Shape& shape, DType dtype, Generator* generator) {
  return normal(shape, 0.0, 1.0, dtype, generator);
}

Tensor normal(const Shape& shape, double mean, double std, DType dtype, Generator* generator) {
  SY_CHECK(is_floating(dtype) && std >= 0, "normal: needs a floating dtype and std >= 0, got ",
           dtype_name(dtype), " and std ", std);
  Tensor out = Tensor::empty(shape, dtype);
  cpu::normal(reserve_for(shape, generator), mean, std, out);
  return out;
}

Tensor& normal_(Tensor& x, double mean, double std, Generator* generator) {
  require_cpu("normal_", x);
  SY_CHECK(is_floating(x.dtype()) && std >= 0, "normal_: needs a floating tensor and std >= 0, got ",
           dtype_name(x.dtype()), " and std ", std);
  PhiloxState state = reserve_for(x.shape(), generator);
  return fill_in_place(x, [&](Tensor& out) { cpu::normal(state, mean, std, out); });
}

Tensor& uniform_(Tensor& x, double low, double high, Generator* generator) {
  require_cpu("uniform_", x);
  SY_CHECK(is_floating(x.dtype()) && low <= high, "uniform_: needs a floating tensor and low <= high, got ",
           dtype_name(x.dtype()), " and [", low, ", ", high, ")");
  PhiloxState state = reserve_for(x.shape(), generator);
  return fill_in_place(x, [&](Tensor& out) { cpu::uniform(state, low, high, out); });
}

Tensor dropout(const Tensor& x, double p, bool training, Generator* generator) {
  SY_CHECK(p >= 0 && p <= 1, "dropout: p = ", p, " is not in [0, 1]");
  if (!training || p == 0) return x;
  require_cpu("dropout", x);
  SY_CHECK(is_floating(x.dtype()), "dropout: x must be floating, got ", dtype_name(x.dtype()));
  Tensor mask = Tensor::empty(x.shape(), DType::kBool, x.device());
  cpu::bernoulli_keep_mask(reserve_for(x.shape(), generator), p, mask);
  // p = 1 keeps nothing, so the scale is never applied.
  const double scale = p < 1 ? 1.0 / (1.0 - p) : 0.0;
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  cpu::masked_scale(x.detach(), mask, scale, out);
  record("DropoutBackward", {x}, {out}, [mask, scale](const std::vector<Tensor>& g) {
    Tensor grad = Tensor::empty(g[0].shape(), g[0].dtype(), g[0].device());
    cpu::masked_scale(g[0], mask, scale, grad);
    return std::vector<Tensor>{grad};
  });
  return out;
}

}  // namespace sy
