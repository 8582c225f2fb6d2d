// Elementwise ops through the op harness: naive reference, layouts, finite differences.
#include <cmath>

#include "core/ops/ops.h"
#include "tests/support/op_harness.h"

namespace sy::testing {
namespace {

OpCase unary_case(std::string name, Tensor (*op)(const Tensor&), double (*f)(double), double low = -2,
                  double high = 2, bool cuda = false) {
  return {.name = std::move(name),
          .inputs = {{.shape = {3, 5}, .low = low, .high = high}},
          .op = [op](const std::vector<Tensor>& x) { return op(x[0]); },
          .reference = [f](const std::vector<HostArray>& x) { return map_reference(x[0], f); },
          .cuda = cuda};
}

OpCase binary_case(std::string name, Tensor (*op)(const Tensor&, const Tensor&),
                   double (*f)(double, double), Shape a, Shape b, double low = -2, double high = 2,
                   bool cuda = false) {
  return {.name = std::move(name),
          .inputs = {{.shape = std::move(a), .low = low, .high = high},
                     {.shape = std::move(b), .low = low, .high = high}},
          .op = [op](const std::vector<Tensor>& x) { return op(x[0], x[1]); },
          .reference = [f](const std::vector<HostArray>& x) { return broadcast_reference(x[0], x[1], f); },
          .cuda = cuda};
}

double silu_ref(double x) { return x / (1 + std::exp(-x)); }
double gelu_ref(double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }
double sigmoid_ref(double x) { return 1 / (1 + std::exp(-x)); }

std::vector<OpCase> elementwise_cases() {
  return {
      binary_case("AddSameShape", add, [](double a, double b) { return a + b; }, {4, 3}, {4, 3}, -2, 2, true),
      binary_case("AddBroadcastRow", add, [](double a, double b) { return a + b; }, {4, 3}, {3}, -2, 2, true),
      binary_case("AddBroadcastBoth", add, [](double a, double b) { return a + b; }, {4, 1, 3}, {2, 1}),
      binary_case("SubBroadcast", sub, [](double a, double b) { return a - b; }, {2, 3}, {2, 1}),
      binary_case("MulBroadcast", mul, [](double a, double b) { return a * b; }, {2, 3, 4}, {3, 1}, -2, 2, true),
      binary_case("DivBroadcast", div, [](double a, double b) { return a / b; }, {3, 4}, {4}, 0.5, 2),
      binary_case("PowTensor", pow, [](double a, double b) { return std::pow(a, b); }, {3, 2}, {3, 2}, 0.5, 2),
      binary_case("Maximum", maximum, [](double a, double b) { return std::max(a, b); }, {3, 4}, {4}),
      binary_case("Minimum", minimum, [](double a, double b) { return std::min(a, b); }, {3, 4}, {3, 1}),
      unary_case("Neg", neg, [](double x) { return -x; }),
      unary_case("Exp", exp, [](double x) { return std::exp(x); }),
      unary_case("Log", log, [](double x) { return std::log(x); }, 0.2, 3),
      unary_case("Sqrt", sqrt, [](double x) { return std::sqrt(x); }, 0.2, 3),
      unary_case("Rsqrt", rsqrt, [](double x) { return 1 / std::sqrt(x); }, 0.2, 3),
      unary_case("Abs", abs, [](double x) { return std::abs(x); }),
      unary_case("Silu", silu, silu_ref, -3, 3, true),
      unary_case("Gelu", gelu, gelu_ref, -3, 3),
      unary_case("Sigmoid", sigmoid, sigmoid_ref),
      unary_case("Tanh", tanh, [](double x) { return std::tanh(x); }),
      unary_case("Relu", relu, [](double x) { return std::max(x, 0.0); }),
      {.name = "PowScalar",
       .inputs = {{.shape = {4, 3}, .low = 0.3, .high = 2}},
       .op = [](const std::vector<Tensor>& x) { return pow(x[0], 2.5); },
       .reference = [](const std::vector<HostArray>& x) {
         return map_reference(x[0], [](double v) { return std::pow(v, 2.5); });
       }},
      {.name = "Clamp",
       .inputs = {{.shape = {4, 3}, .low = -2, .high = 2}},
       .op = [](const std::vector<Tensor>& x) { return clamp(x[0], -0.5, 0.7); },
       .reference = [](const std::vector<HostArray>& x) {
         return map_reference(x[0], [](double v) { return std::clamp(v, -0.5, 0.7); });
       }},
      {.name = "WhereBroadcast",
       .inputs = {{.shape = {3, 4}, .differentiable = false}, {.shape = {3, 4}}, {.shape = {4}}},
       .op = [](const std::vector<Tensor>& x) { return where(gt(x[0], scalar_like(x[0], 0.0)), x[1], x[2]); },
       .reference = [](const std::vector<HostArray>& x) {
         HostArray picked = broadcast_reference(x[1], x[2], [](double a, double) { return a; });
         HostArray other = broadcast_reference(x[1], x[2], [](double, double b) { return b; });
         for (int64_t i = 0; i < picked.numel(); ++i) {
           if (!(x[0].values[i] > 0)) picked.values[i] = other.values[i];
         }
         return picked;
       }},
      {.name = "MaskedFill",
       .inputs = {{.shape = {3, 4}}, {.shape = {3, 1}, .differentiable = false}},
       .op = [](const std::vector<Tensor>& x) { return masked_fill(x[0], lt(x[1], scalar_like(x[1], 0.0)), -7.0); },
       .reference = [](const std::vector<HostArray>& x) {
         return broadcast_reference(x[0], x[1], [](double a, double m) { return m < 0 ? -7.0 : a; });
       }},
  };
}

INSTANTIATE_TEST_SUITE_P(Elementwise, OpCaseTest, ::testing::ValuesIn(elementwise_cases()), OpCaseName);

TEST(Elementwise, ComparisonsGiveBoolAndPromote) {
  Tensor a = Tensor::from_vector(std::vector<float>{1, 2, 3}, {3});
  Tensor b = Tensor::from_vector(std::vector<int>{2, 2, 2}, {3}, DType::kI32);
  Tensor less = lt(a, b);
  EXPECT_EQ(less.dtype(), DType::kBool);
  EXPECT_EQ(less.to_vector<int>(), (std::vector<int>{1, 0, 0}));
  EXPECT_EQ((a + b).dtype(), DType::kF32);
  EXPECT_EQ((b + b).dtype(), DType::kI32);
  EXPECT_EQ((b + b).to_vector<int>(), (std::vector<int>{4, 4, 4}));
}

TEST(Elementwise, Bf16ComputesInF32AndRounds) {
  Tensor a = Tensor::from_vector(std::vector<float>{1.0f, 256.0f}, {2}, DType::kBF16);
  Tensor b = Tensor::from_vector(std::vector<float>{0.00390625f, 1.0f}, {2}, DType::kBF16);
  Tensor c = a + b;
  EXPECT_EQ(c.dtype(), DType::kBF16);
  // bf16 keeps 8 significant bits: 1 + 2^-8 rounds (to even) back to 1.
  EXPECT_EQ(c.to_vector<float>(), (std::vector<float>{1.0f, 256.0f}));
}

TEST(Elementwise, IncompatibleShapesNameBoth) {
  try {
    add(Tensor::zeros({2, 3}), Tensor::zeros({4}));
    FAIL() << "expected a broadcast error";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("(2, 3) and (4)"), std::string::npos) << error.what();
  }
}

}  // namespace
}  // namespace sy::testing
