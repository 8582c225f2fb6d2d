#include "tests/support/op_harness.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "core/autograd/grad_mode.h"
#include "core/ops/ops.h"

namespace sy::testing {

HostArray HostArray::of(const Tensor& tensor) {
  return {tensor.shape(), tensor.to_vector<double>()};
}

int64_t HostArray::index(const std::vector<int64_t>& position) const {
  int64_t flat = 0;
  for (size_t d = 0; d < shape.size(); ++d) flat = flat * shape[d] + position[d];
  return flat;
}

Tensor HostArray::to_tensor(DType dtype) const { return Tensor::from_vector(values, shape, dtype); }

HostArray map_reference(const HostArray& x, const std::function<double(double)>& f) {
  HostArray out = x;
  for (double& v : out.values) v = f(v);
  return out;
}

HostArray broadcast_reference(const HostArray& a, const HostArray& b,
                              const std::function<double(double, double)>& f) {
  size_t dims = std::max(a.shape.size(), b.shape.size());
  auto padded = [dims](const Shape& s) {
    Shape p(dims - s.size(), 1);
    p.insert(p.end(), s.begin(), s.end());
    return p;
  };
  Shape pa = padded(a.shape), pb = padded(b.shape), shape(dims);
  for (size_t d = 0; d < dims; ++d) shape[d] = std::max(pa[d], pb[d]);
  HostArray out{shape, std::vector<double>(shape_numel(shape))};
  std::vector<int64_t> position(dims, 0);
  for (int64_t flat = 0; flat < out.numel(); ++flat) {
    int64_t rest = flat, ia = 0, ib = 0;
    for (int64_t d = static_cast<int64_t>(dims) - 1; d >= 0; --d) {
      position[d] = rest % shape[d];
      rest /= shape[d];
    }
    for (size_t d = 0; d < dims; ++d) {
      ia = ia * pa[d] + (pa[d] == 1 ? 0 : position[d]);
      ib = ib * pb[d] + (pb[d] == 1 ? 0 : position[d]);
    }
    out.values[flat] = f(a.values[ia], b.values[ib]);
  }
  return out;
}

double max_relative_error(const Tensor& actual, const Tensor& expected) {
  EXPECT_EQ(actual.shape(), expected.shape());
  if (actual.shape() != expected.shape()) return INFINITY;
  std::vector<double> a = actual.to_vector<double>(), e = expected.to_vector<double>();
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) && std::isnan(e[i])) continue;
    if (std::isinf(a[i]) && a[i] == e[i]) continue;
    worst = std::max(worst, std::abs(a[i] - e[i]) / (1.0 + std::abs(e[i])));
  }
  return worst;
}

namespace {

uint64_t seed_of(const std::string& name) { return std::hash<std::string>{}(name) & 0xffffffffu; }

// The same values in a strided layout: every element sits at an odd offset with stride 2.
Tensor non_contiguous(const Tensor& x) {
  Shape padded = x.shape();
  padded.push_back(2);
  Tensor storage = Tensor::zeros(padded, x.dtype());
  Tensor view = storage.select(-1, 1);
  view.copy_(x);
  return view;
}

std::vector<Tensor> detached_copies(const std::vector<Tensor>& inputs,
                                    const std::vector<InputSpec>& specs, bool requires_grad) {
  std::vector<Tensor> out;
  for (size_t i = 0; i < inputs.size(); ++i) {
    Tensor copy = inputs[i].detach().clone();
    if (requires_grad && specs[i].differentiable && is_floating(copy.dtype())) copy.set_requires_grad(true);
    out.push_back(copy);
  }
  return out;
}

void check_gradient(const OpCase& op_case, const std::vector<Tensor>& inputs) {
  std::vector<Tensor> leaves = detached_copies(inputs, op_case.inputs, true);
  Tensor out = op_case.op(leaves);
  // A fixed random upstream gradient: loss = sum(out * weights).
  std::mt19937_64 rng(seed_of(op_case.name) + 7);
  std::uniform_real_distribution<double> uniform(-1, 1);
  std::vector<double> weight_values(out.numel());
  for (double& w : weight_values) w = uniform(rng);
  Tensor weights = Tensor::from_vector(weight_values, out.shape(), DType::kF64);
  sum(out.to(DType::kF64) * weights).backward();

  constexpr double kStep = 1e-6;
  NoGradGuard no_grad;
  for (size_t i = 0; i < leaves.size(); ++i) {
    if (!leaves[i].requires_grad()) continue;
    Tensor analytic = leaves[i].grad();
    ASSERT_TRUE(analytic.defined()) << op_case.name << ": no gradient reached input " << i;
    std::vector<double> numeric(leaves[i].numel());
    std::vector<Tensor> probe = detached_copies(inputs, op_case.inputs, false);
    Tensor flat = probe[i].reshape({-1});
    for (int64_t k = 0; k < flat.numel(); ++k) {
      Tensor element = flat.narrow(0, k, 1);
      double original = element.item();
      element.fill_(original + kStep);
      double plus = sum(op_case.op(probe).to(DType::kF64) * weights).item();
      element.fill_(original - kStep);
      double minus = sum(op_case.op(probe).to(DType::kF64) * weights).item();
      element.fill_(original);
      numeric[k] = (plus - minus) / (2 * kStep);
    }
    Tensor expected = Tensor::from_vector(numeric, leaves[i].shape(), DType::kF64);
    double error = max_relative_error(analytic.to(DType::kF64), expected);
    EXPECT_LT(error, op_case.gradient_tolerance)
        << op_case.name << ": gradient of input " << i << " differs from finite differences\n"
        << " analytic " << analytic << "\n numeric  " << expected;
  }
}

}  // namespace

std::vector<Tensor> make_inputs(const OpCase& op_case, DType float_dtype, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<Tensor> inputs;
  for (const InputSpec& spec : op_case.inputs) {
    if (spec.make) {
      Tensor made = spec.make();
      inputs.push_back(is_floating(made.dtype()) ? made.to(float_dtype) : made);
      continue;
    }
    std::uniform_real_distribution<double> uniform(spec.low, spec.high);
    std::vector<double> values(shape_numel(spec.shape));
    for (double& v : values) v = uniform(rng);
    DType dtype = is_floating(spec.dtype) ? float_dtype : spec.dtype;
    inputs.push_back(Tensor::from_vector(values, spec.shape, dtype));
  }
  return inputs;
}

void check_op(const OpCase& op_case) {
  SCOPED_TRACE(op_case.name);
  std::vector<Tensor> inputs = make_inputs(op_case, DType::kF64, seed_of(op_case.name));
  Tensor out;
  {
    NoGradGuard no_grad;
    out = op_case.op(inputs);
  }
  if (op_case.reference) {
    std::vector<HostArray> host;
    for (const Tensor& input : inputs) host.push_back(HostArray::of(input));
    Tensor expected = op_case.reference(host).to_tensor(DType::kF64);
    EXPECT_LT(max_relative_error(out.to(DType::kF64), expected), op_case.forward_tolerance)
        << op_case.name << " (f64) differs from the reference\n got      " << out << "\n expected "
        << expected;
  }
  {
    // f32 inputs agree with the f64 result.
    NoGradGuard no_grad;
    std::vector<Tensor> inputs32;
    for (const Tensor& input : inputs) inputs32.push_back(is_floating(input.dtype()) ? input.to(DType::kF32) : input);
    Tensor out32 = op_case.op(inputs32);
    EXPECT_LT(max_relative_error(out32.to(DType::kF64), out.to(DType::kF64)), op_case.f32_tolerance)
        << op_case.name << " (f32) differs from f64";
    // Non-contiguous views of the same values give the same result.
    std::vector<Tensor> strided;
    for (const Tensor& input : inputs) strided.push_back(non_contiguous(input));
    Tensor out_strided = op_case.op(strided);
    EXPECT_LT(max_relative_error(out_strided.to(DType::kF64), out.to(DType::kF64)), 1e-12)
        << op_case.name << " on non-contiguous inputs differs";
    if (op_case.cuda && cuda_available()) {
      std::vector<Tensor> on_device;
      for (const Tensor& input : inputs32) on_device.push_back(input.to(Device::CUDA(0)));
      Tensor out_cuda = op_case.op(on_device).to(Device::CPU());
      EXPECT_LT(max_relative_error(out_cuda.to(DType::kF64), out.to(DType::kF64)), op_case.cuda_tolerance)
          << op_case.name << " on CUDA differs from the CPU";
    }
  }
  if (op_case.check_gradient) check_gradient(op_case, inputs);
}

}  // namespace sy::testing

namespace sy::testing {

TEST_P(OpCaseTest, MatchesReferenceOnEveryLayoutAndFiniteDifferences) { check_op(GetParam()); }
// Linked into every test binary; only the op tests instantiate it.
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(OpCaseTest);

}  // namespace sy::testing
