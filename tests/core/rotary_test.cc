// rotary_embedding through the op harness (rotate-half pairs i and i + D/2, gradient by the
// negative angle), and rotary_tables against the angle formula.
#include <gtest/gtest.h>

#include <cmath>

#include "core/ops/ops.h"
#include "tests/support/op_harness.h"

namespace sy::testing {
namespace {

// Reference: for x (B, T, H, D), the pair (x_i, x_{i+D/2}) times the 2x2 rotation by the
// angle whose cos and sin are the tables' entry (t, i).
HostArray rotary_reference(const std::vector<HostArray>& x) {
  const HostArray& input = x[0];
  const HostArray& cos = x[1];
  const HostArray& sin = x[2];
  const int64_t B = input.shape[0], T = input.shape[1], H = input.shape[2], D = input.shape[3];
  HostArray out = input;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t h = 0; h < H; ++h) {
        for (int64_t i = 0; i < D / 2; ++i) {
          const double c = cos.values[cos.index({t, i})], s = sin.values[sin.index({t, i})];
          const double a = input.values[input.index({b, t, h, i})];
          const double partner = input.values[input.index({b, t, h, i + D / 2})];
          out.values[out.index({b, t, h, i})] = a * c - partner * s;
          out.values[out.index({b, t, h, i + D / 2})] = partner * c + a * s;
        }
      }
    }
  }
  return out;
}

OpCase rotary_case(std::string name, Shape x_shape, double theta, int64_t offset) {
  const int64_t T = x_shape[1], D = x_shape[3];
  auto table = [T, D, theta, offset](bool want_sin) {
    return [=] {
      auto [cos, sin] = rotary_tables(T, D, theta, offset);
      return want_sin ? sin : cos;
    };
  };
  return {.name = std::move(name),
          .inputs = {{.shape = x_shape},
                     {.shape = {T, D / 2}, .differentiable = false, .make = table(false)},
                     {.shape = {T, D / 2}, .differentiable = false, .make = table(true)}},
          .op = [](const std::vector<Tensor>& x) { return rotary_embedding(x[0], x[1], x[2]); },
          .reference = rotary_reference};
}

std::vector<OpCase> rotary_cases() {
  return {
      rotary_case("B2T5H3D8Offset3", {2, 5, 3, 8}, 10000.0, 3),
      rotary_case("B1T4H2D4Theta50", {1, 4, 2, 4}, 50.0, 0),
      rotary_case("B1T3H1D2", {1, 3, 1, 2}, 10000.0, 7),
  };
}

INSTANTIATE_TEST_SUITE_P(Rotary, OpCaseTest, ::testing::ValuesIn(rotary_cases()), OpCaseName);

TEST(Rotary, TablesFollowThetaPowerLawFromOffset) {
  const int64_t T = 6, D = 8, offset = 100;
  const double theta = 500.0;
  auto [cos, sin] = rotary_tables(T, D, theta, offset);
  ASSERT_EQ(cos.shape(), (Shape{T, D / 2}));
  EXPECT_EQ(cos.dtype(), DType::kF32);
  std::vector<double> c = cos.to_vector<double>(), s = sin.to_vector<double>();
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t i = 0; i < D / 2; ++i) {
      const double angle = static_cast<double>(t + offset) / std::pow(theta, 2.0 * i / D);
      EXPECT_NEAR(c[t * (D / 2) + i], std::cos(angle), 1e-6) << "t " << t << " i " << i;
      EXPECT_NEAR(s[t * (D / 2) + i], std::sin(angle), 1e-6) << "t " << t << " i " << i;
    }
  }
}

TEST(Rotary, PairsDimIWithDimIPlusHalfNotAdjacentDims) {
  // D = 4, one position at angle pi/2 for pair 0: x = (1, 0, 0, 0) -> (0, 0, 1, 0) in the
  // rotate-half convention (the interleaved one would give (0, 1, 0, 0)).
  Tensor x = Tensor::from_vector(std::vector<float>{1, 0, 0, 0}, {1, 1, 1, 4});
  Tensor cos = Tensor::from_vector(std::vector<float>{0, 1}, {1, 2});
  Tensor sin = Tensor::from_vector(std::vector<float>{1, 0}, {1, 2});
  std::vector<float> out = rotary_embedding(x, cos, sin).to_vector<float>();
  EXPECT_EQ(out, (std::vector<float>{0, 0, 1, 0}));
}

TEST(Rotary, TableShapeMismatchNamesShapes) {
  auto [cos, sin] = rotary_tables(4, 8);
  try {
    rotary_embedding(Tensor::zeros({1, 5, 2, 8}), cos, sin);
    FAIL() << "expected a shape error";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("(4, 4)"), std::string::npos) << error.what();
  }
}

}  // namespace
}  // namespace sy::testing
