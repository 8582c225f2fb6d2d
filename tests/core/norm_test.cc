// rms_norm / layer_norm through the op harness, plus parameter-gradient summing, bf16 and
// argument errors.
#include <cmath>

#include "core/ops/ops.h"
#include "tests/support/op_harness.h"

namespace sy::testing {
namespace {

// Naive references over rows of the last dim.
HostArray rms_norm_reference(const HostArray& x, const HostArray& weight, double eps) {
  const int64_t C = x.shape.back(), rows = x.numel() / C;
  HostArray out = x;
  for (int64_t r = 0; r < rows; ++r) {
    double square_sum = 0;
    for (int64_t c = 0; c < C; ++c) square_sum += x.values[r * C + c] * x.values[r * C + c];
    const double rstd = 1 / std::sqrt(square_sum / C + eps);
    for (int64_t c = 0; c < C; ++c) out.values[r * C + c] = x.values[r * C + c] * rstd * weight.values[c];
  }
  return out;
}

HostArray layer_norm_reference(const HostArray& x, const HostArray& weight, const HostArray* bias, double eps) {
  const int64_t C = x.shape.back(), rows = x.numel() / C;
  HostArray out = x;
  for (int64_t r = 0; r < rows; ++r) {
    double mean = 0, variance = 0;
    for (int64_t c = 0; c < C; ++c) mean += x.values[r * C + c] / C;
    for (int64_t c = 0; c < C; ++c) variance += (x.values[r * C + c] - mean) * (x.values[r * C + c] - mean) / C;
    for (int64_t c = 0; c < C; ++c) {
      out.values[r * C + c] = (x.values[r * C + c] - mean) / std::sqrt(variance + eps) * weight.values[c] +
                              (bias ? bias->values[c] : 0.0);
    }
  }
  return out;
}

std::vector<OpCase> norm_cases() {
  return {
      {.name = "RmsNorm2d",
       .inputs = {{.shape = {4, 8}, .low = -2, .high = 2}, {.shape = {8}, .low = 0.5, .high = 1.5}},
       .op = [](const std::vector<Tensor>& x) { return rms_norm(x[0], x[1], 1e-6); },
       .reference = [](const std::vector<HostArray>& x) { return rms_norm_reference(x[0], x[1], 1e-6); },
       .cuda = true},
      {.name = "RmsNorm3dLargeEps",
       .inputs = {{.shape = {2, 3, 5}, .low = -1, .high = 1}, {.shape = {5}, .low = -1.5, .high = 1.5}},
       .op = [](const std::vector<Tensor>& x) { return rms_norm(x[0], x[1], 0.1); },
       .reference = [](const std::vector<HostArray>& x) { return rms_norm_reference(x[0], x[1], 0.1); },
       .cuda = true},
      {.name = "LayerNormWithBias",
       .inputs = {{.shape = {3, 6}, .low = -2, .high = 3},
                  {.shape = {6}, .low = 0.5, .high = 1.5},
                  {.shape = {6}, .low = -1, .high = 1}},
       .op = [](const std::vector<Tensor>& x) { return layer_norm(x[0], x[1], x[2], 1e-5); },
       .reference = [](const std::vector<HostArray>& x) { return layer_norm_reference(x[0], x[1], &x[2], 1e-5); }},
      {.name = "LayerNormNoBias3d",
       .inputs = {{.shape = {2, 2, 7}, .low = -1, .high = 2}, {.shape = {7}, .low = -1, .high = 1}},
       .op = [](const std::vector<Tensor>& x) { return layer_norm(x[0], x[1], Tensor(), 1e-3); },
       .reference = [](const std::vector<HostArray>& x) { return layer_norm_reference(x[0], x[1], nullptr, 1e-3); }},
  };
}

INSTANTIATE_TEST_SUITE_P(Norm, OpCaseTest, ::testing::ValuesIn(norm_cases()), OpCaseName);

// Smooth deterministic values in [-scale, scale].
Tensor wave(const Shape& shape, double frequency, double scale, DType dtype = DType::kF32) {
  std::vector<double> values(shape_numel(shape));
  for (size_t i = 0; i < values.size(); ++i) values[i] = scale * std::sin(frequency * static_cast<double>(i) + 0.3);
  return Tensor::from_vector(values, shape, dtype);
}

// Many rows (several row blocks, several threads): parameter gradients equal sum over rows
// of the closed forms, computed here in f64.
TEST(Norm, ParameterGradientsSumOverManyRows) {
  const int64_t rows = 4096, C = 64;
  Tensor x = wave({rows, C}, 0.731, 2.0).set_requires_grad(true);
  Tensor weight = wave({C}, 1.3, 1.0).set_requires_grad(true);
  Tensor bias = wave({C}, 0.4, 0.5).set_requires_grad(true);
  Tensor upstream = wave({rows, C}, 0.117, 1.0);
  sum(layer_norm(x, weight, bias, 1e-5) * upstream).backward();
  std::vector<double> xs = x.to_vector<double>(), g = upstream.to_vector<double>();
  std::vector<double> dw(C, 0), db(C, 0);
  for (int64_t r = 0; r < rows; ++r) {
    double mean = 0, variance = 0;
    for (int64_t c = 0; c < C; ++c) mean += xs[r * C + c] / C;
    for (int64_t c = 0; c < C; ++c) variance += (xs[r * C + c] - mean) * (xs[r * C + c] - mean) / C;
    for (int64_t c = 0; c < C; ++c) {
      dw[c] += g[r * C + c] * (xs[r * C + c] - mean) / std::sqrt(variance + 1e-5);
      db[c] += g[r * C + c];
    }
  }
  std::vector<double> got_dw = weight.grad().to_vector<double>(), got_db = bias.grad().to_vector<double>();
  for (int64_t c = 0; c < C; ++c) {
    EXPECT_NEAR(got_dw[c], dw[c], 1e-3 * (1 + std::abs(dw[c]))) << c;
    EXPECT_NEAR(got_db[c], db[c], 1e-3 * (1 + std::abs(db[c]))) << c;
  }
  // Parameter gradients accumulate over uses: a second backward doubles them.
  sum(layer_norm(x, weight, bias, 1e-5) * upstream).backward();
  EXPECT_NEAR(bias.grad().to_vector<double>()[5], 2 * db[5], 2e-3 * (1 + std::abs(db[5])));
}

TEST(Norm, RmsNormGradientIsDeterministic) {
  Tensor x = wave({2048, 96}, 0.913, 3.0);
  Tensor weight = wave({96}, 0.21, 1.0);
  auto weight_grad = [&] {
    Tensor w = weight.detach().clone().set_requires_grad(true);
    sum(rms_norm(x, w) * x).backward();
    return w.grad().to_vector<float>();
  };
  EXPECT_EQ(weight_grad(), weight_grad());
}

TEST(Norm, Bf16InputComputesInF32) {
  Tensor x = wave({8, 32}, 0.77, 2.0);
  Tensor weight = wave({32}, 0.5, 1.0);
  Tensor bias = wave({32}, 0.9, 0.5);
  Tensor x16 = x.to(DType::kBF16), w16 = weight.to(DType::kBF16), b16 = bias.to(DType::kBF16);
  // The reference sees the same bf16-rounded inputs, in f32.
  Tensor rms_expected = rms_norm(x16.to(DType::kF32), w16.to(DType::kF32));
  Tensor rms = rms_norm(x16, w16);
  EXPECT_EQ(rms.dtype(), DType::kBF16);
  EXPECT_LT(max_relative_error(rms.to(DType::kF64), rms_expected.to(DType::kF64)), 8e-3);
  Tensor ln_expected = layer_norm(x16.to(DType::kF32), w16.to(DType::kF32), b16.to(DType::kF32));
  Tensor ln = layer_norm(x16, w16, b16);
  EXPECT_EQ(ln.dtype(), DType::kBF16);
  EXPECT_LT(max_relative_error(ln.to(DType::kF64), ln_expected.to(DType::kF64)), 8e-3);
  // Gradients come back in bf16 and agree with the f32 ones.
  Tensor x_leaf = x16.detach().clone().set_requires_grad(true);
  Tensor w_leaf = w16.detach().clone().set_requires_grad(true);
  sum(rms_norm(x_leaf, w_leaf) * x16).backward();
  Tensor x32 = x16.to(DType::kF32).set_requires_grad(true);
  Tensor w32 = w16.to(DType::kF32).set_requires_grad(true);
  sum(rms_norm(x32, w32) * x16.to(DType::kF32)).backward();
  EXPECT_EQ(x_leaf.grad().dtype(), DType::kBF16);
  EXPECT_LT(max_relative_error(x_leaf.grad().to(DType::kF64), x32.grad().to(DType::kF64)), 2e-2);
  EXPECT_LT(max_relative_error(w_leaf.grad().to(DType::kF64), w32.grad().to(DType::kF64)), 2e-2);
}

TEST(Norm, F32WeightOnBf16InputGetsF32Gradient) {
  Tensor x = wave({4, 16}, 0.5, 1.0, DType::kBF16).set_requires_grad(true);
  Tensor weight = wave({16}, 0.3, 1.0).set_requires_grad(true);
  Tensor y = rms_norm(x, weight);
  EXPECT_EQ(y.dtype(), DType::kBF16);
  sum(y).backward();
  EXPECT_EQ(weight.grad().dtype(), DType::kF32);
  EXPECT_EQ(x.grad().dtype(), DType::kBF16);
}

TEST(Norm, WrongWeightShapeNamesShapes) {
  try {
    rms_norm(Tensor::zeros({2, 8}), Tensor::ones({6}));
    FAIL() << "expected an error";
  } catch (const Error& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find("weight (6)"), std::string::npos) << message;
    EXPECT_NE(message.find("(2, 8)"), std::string::npos) << message;
  }
  try {
    layer_norm(Tensor::zeros({3, 4}), Tensor::ones({4}), Tensor::zeros({5}));
    FAIL() << "expected an error";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("bias (5)"), std::string::npos) << error.what();
  }
}

}  // namespace
}  // namespace sy::testing
