// Fused cross-entropy through the op harness (ignore_index, label smoothing, reductions),
// plus the all-ignored case, bf16 logits and target errors.
#include <cmath>

#include "core/ops/ops.h"
#include "tests/support/op_harness.h"

namespace sy::testing {
namespace {

// Naive reference: log-probabilities by the definition, then torch's formula per row.
HostArray cross_entropy_reference(const HostArray& logits, const HostArray& targets,
                                  const CrossEntropyOptions& options) {
  const int64_t N = logits.shape[0], V = logits.shape[1];
  std::vector<double> losses(N, 0.0);
  int64_t counted = 0;
  for (int64_t n = 0; n < N; ++n) {
    const auto t = static_cast<int64_t>(targets.values[n]);
    if (t == options.ignore_index) continue;
    ++counted;
    double denominator = 0;
    for (int64_t v = 0; v < V; ++v) denominator += std::exp(logits.values[n * V + v]);
    double nll = 0, uniform = 0;
    for (int64_t v = 0; v < V; ++v) {
      const double log_p = std::log(std::exp(logits.values[n * V + v]) / denominator);
      if (v == t) nll = -log_p;
      uniform += -log_p / V;
    }
    losses[n] = (1 - options.label_smoothing) * nll + options.label_smoothing * uniform;
  }
  if (options.reduction == Reduction::kNone) return {{N}, losses};
  double total = 0;
  for (double loss : losses) total += loss;
  if (options.reduction == Reduction::kMean) total /= static_cast<double>(counted);
  return {{}, {total}};
}

OpCase cross_entropy_case(std::string name, int64_t N, int64_t V, std::vector<int64_t> targets, DType target_dtype,
                          CrossEntropyOptions options) {
  return {.name = std::move(name),
          .inputs = {{.shape = {N, V}, .low = -3, .high = 3},
                     {.shape = {N},
                      .differentiable = false,
                      .dtype = target_dtype,
                      .make = [targets, N, target_dtype] { return Tensor::from_vector(targets, {N}, target_dtype); }}},
          .op = [options](const std::vector<Tensor>& x) { return cross_entropy(x[0], x[1], options); },
          .reference = [options](const std::vector<HostArray>& x) {
            return cross_entropy_reference(x[0], x[1], options);
          }};
}

std::vector<OpCase> cross_entropy_cases() {
  return {
      cross_entropy_case("MeanI64", 4, 7, {3, 0, 6, 2}, DType::kI64, {}),
      cross_entropy_case("MeanIgnoresRows", 5, 6, {1, -100, 5, -100, 0}, DType::kI64, {}),
      cross_entropy_case("SumI32", 3, 5, {4, 4, 1}, DType::kI32, {.reduction = Reduction::kSum}),
      cross_entropy_case("NonePerRow", 4, 3, {2, -1, 0, 1}, DType::kI64,
                         {.ignore_index = -1, .reduction = Reduction::kNone}),
      cross_entropy_case("MeanSmoothedWithIgnore", 5, 8, {7, 2, -100, 0, 3}, DType::kI64,
                         {.label_smoothing = 0.1}),
      cross_entropy_case("SumSmoothed", 3, 4, {0, 3, 3}, DType::kI32,
                         {.label_smoothing = 0.25, .reduction = Reduction::kSum}),
      cross_entropy_case("NoneSmoothedIgnoreIndexInRange", 4, 5, {2, 4, 1, 2}, DType::kI64,
                         {.ignore_index = 2, .label_smoothing = 0.3, .reduction = Reduction::kNone}),
  };
}

INSTANTIATE_TEST_SUITE_P(CrossEntropy, OpCaseTest, ::testing::ValuesIn(cross_entropy_cases()), OpCaseName);

Tensor wave(const Shape& shape, double frequency, double scale, DType dtype = DType::kF32) {
  std::vector<double> values(shape_numel(shape));
  for (size_t i = 0; i < values.size(); ++i) values[i] = scale * std::sin(frequency * static_cast<double>(i) + 0.3);
  return Tensor::from_vector(values, shape, dtype);
}

// As torch: the mean over zero counted rows is 0 / 0 = nan; the gradient is zero (every
// row is ignored). The sum is 0.
TEST(CrossEntropy, AllIgnoredMeanIsNanWithZeroGradient) {
  Tensor logits = wave({3, 4}, 0.7, 2.0).set_requires_grad(true);
  Tensor targets = Tensor::full({3}, -100, DType::kI64);
  Tensor loss = cross_entropy(logits, targets);
  EXPECT_TRUE(std::isnan(loss.item()));
  loss.backward();
  for (double g : logits.grad().to_vector<double>()) EXPECT_EQ(g, 0.0);
  EXPECT_EQ(cross_entropy(logits, targets, {.reduction = Reduction::kSum}).item(), 0.0);
  EXPECT_EQ(cross_entropy(logits, targets, {.label_smoothing = 0.1, .reduction = Reduction::kSum}).item(), 0.0);
}

TEST(CrossEntropy, LabelSmoothingOnUniformLogitsGivesLogVAndUniformTargetZeroGradient) {
  const int64_t V = 4;
  Tensor logits = Tensor::zeros({2, V}).set_requires_grad(true);
  Tensor targets = Tensor::from_vector(std::vector<int64_t>{1, 3}, {2}, DType::kI64);
  for (double smoothing : {0.0, 0.4, 1.0}) {
    EXPECT_NEAR(cross_entropy(logits, targets, {.label_smoothing = smoothing}).item(), std::log(4.0), 1e-6)
        << smoothing;
  }
  // With s = 1 the target distribution is uniform, which softmax of equal logits already is.
  cross_entropy(logits, targets, {.label_smoothing = 1.0}).backward();
  for (double g : logits.grad().to_vector<double>()) EXPECT_NEAR(g, 0.0, 1e-7);
}

TEST(CrossEntropy, LabelSmoothingGradientIsSoftmaxMinusSmoothedTarget) {
  Tensor logits = wave({1, 3}, 1.1, 1.5, DType::kF64).set_requires_grad(true);
  Tensor targets = Tensor::from_vector(std::vector<int64_t>{2}, {1}, DType::kI64);
  cross_entropy(logits, targets, {.label_smoothing = 0.3}).backward();
  std::vector<double> p = softmax(logits.detach()).to_vector<double>();
  std::vector<double> g = logits.grad().to_vector<double>();
  EXPECT_NEAR(g[0], p[0] - 0.1, 1e-12);
  EXPECT_NEAR(g[1], p[1] - 0.1, 1e-12);
  EXPECT_NEAR(g[2], p[2] - 0.1 - 0.7, 1e-12);
}

TEST(CrossEntropy, I32AndI64TargetsAgree) {
  Tensor logits = wave({4, 9}, 0.37, 3.0);
  std::vector<int64_t> t = {8, 0, -100, 4};
  double a = cross_entropy(logits, Tensor::from_vector(t, {4}, DType::kI64)).item();
  double b = cross_entropy(logits, Tensor::from_vector(t, {4}, DType::kI32)).item();
  EXPECT_EQ(a, b);
}

TEST(CrossEntropy, Bf16LogitsComputeInF32) {
  Tensor logits = wave({6, 50}, 0.91, 4.0).to(DType::kBF16);
  Tensor targets = Tensor::from_vector(std::vector<int64_t>{3, 49, 0, -100, 17, 25}, {6}, DType::kI64);
  CrossEntropyOptions options{.label_smoothing = 0.1};
  Tensor leaf16 = logits.detach().clone().set_requires_grad(true);
  Tensor loss16 = cross_entropy(leaf16, targets, options);
  Tensor leaf32 = logits.to(DType::kF32).set_requires_grad(true);
  Tensor loss32 = cross_entropy(leaf32, targets, options);
  EXPECT_EQ(loss16.dtype(), DType::kBF16);
  EXPECT_NEAR(loss16.item(), loss32.item(), 1e-2 * loss32.item());
  loss16.backward();
  loss32.backward();
  EXPECT_EQ(leaf16.grad().dtype(), DType::kBF16);
  EXPECT_LT(max_relative_error(leaf16.grad().to(DType::kF64), leaf32.grad().to(DType::kF64)), 1e-3);
}

TEST(CrossEntropy, OutOfRangeTargetNamesValueAndV) {
  Tensor logits = Tensor::zeros({3, 5});
  for (int64_t bad : {5, 9, -3}) {
    Tensor targets = Tensor::from_vector(std::vector<int64_t>{0, bad, 1}, {3}, DType::kI64);
    try {
      cross_entropy(logits, targets);
      FAIL() << "expected an error for target " << bad;
    } catch (const Error& error) {
      const std::string message = error.what();
      EXPECT_NE(message.find(absl::StrCat("target ", bad, " ")), std::string::npos) << message;
      EXPECT_NE(message.find("V = 5"), std::string::npos) << message;
    }
  }
}

TEST(CrossEntropy, MismatchedShapesAreRejected) {
  try {
    cross_entropy(Tensor::zeros({3, 5}), Tensor::zeros({4}, DType::kI64));
    FAIL() << "expected an error";
  } catch (const Error& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find("(4)"), std::string::npos) << message;
    EXPECT_NE(message.find("(3, 5)"), std::string::npos) << message;
  }
  EXPECT_THROW(cross_entropy(Tensor::zeros({3, 5}), Tensor::zeros({3})), Error);  // f32 targets
}

}  // namespace
}  // namespace sy::testing
