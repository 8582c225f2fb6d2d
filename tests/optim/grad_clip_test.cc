// Global-norm clipping against torch.nn.utils.clip_grad_norm_ (run in f64), and its contracts:
// the norm is reported before clipping, gradients under the limit keep their bits, parameters
// without a gradient are skipped, and the sum is the same bits for any number of threads.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>

#include "absl/strings/str_cat.h"
#include "optim/grad_clip.h"
#include "tests/optim/optim_support.h"
#include "tests/support/torch_reference.h"

namespace sy::testing {
namespace {

std::vector<Tensor> parameters_with_grads(DType dtype, uint64_t seed) {
  std::vector<Tensor> parameters;
  for (const Shape& shape : std::vector<Shape>{{3, 4}, {7}, {2, 2, 5}}) {
    Tensor parameter = Tensor::zeros(shape, dtype).set_requires_grad(true);
    parameter.set_grad(random_normal(shape, seed++, 1.0, dtype));
    parameters.push_back(parameter);
  }
  return parameters;
}

TEST(GradClipReference, NormAndClippedGradsMatchTorchClipGradNorm) {
  SY_REQUIRE_TORCH();
  // f64 gradients compare to 1e-12; f32 ones to their rounding (the scale is applied in f32).
  struct ClipCase {
    DType dtype;
    double max_norm;  // as a fraction of the norm: < 1 clips, > 1 leaves the gradients alone
    double tolerance;
  };
  const std::vector<ClipCase> clip_cases = {{DType::kF64, 0.3, 1e-12}, {DType::kF64, 2.0, 1e-12},
                                            {DType::kF32, 0.5, 1e-6}};
  std::vector<TorchCase> torch_cases;
  std::vector<std::vector<Tensor>> inputs;
  for (size_t c = 0; c < clip_cases.size(); ++c) {
    std::vector<Tensor> parameters = parameters_with_grads(clip_cases[c].dtype, 100 + 10 * c);
    TorchCase torch_case;
    torch_case.inputs["kind"] = Tensor::scalar(3, DType::kF64);
    torch_case.inputs["count"] = Tensor::scalar(static_cast<double>(parameters.size()), DType::kF64);
    const double norm = std::sqrt(grad_sum_of_squares(parameters));
    torch_case.inputs["max_norm"] = Tensor::scalar(clip_cases[c].max_norm * norm, DType::kF64);
    torch_case.outputs = {"norm"};
    for (size_t i = 0; i < parameters.size(); ++i) {
      torch_case.inputs[absl::StrCat("grad.", i)] = parameters[i].grad().clone();
      torch_case.outputs.push_back(absl::StrCat("grad.", i));
    }
    torch_cases.push_back(torch_case);
    inputs.push_back(parameters);
  }
  absl::StatusOr<std::vector<TorchOutputs>> torch = run_torch_reference("optim.py", torch_cases);
  ASSERT_TRUE(torch.ok()) << torch.status();
  for (size_t c = 0; c < clip_cases.size(); ++c) {
    SCOPED_TRACE(absl::StrCat("case ", c));
    const double max_norm = torch_cases[c].inputs.at("max_norm").item();
    const double norm = clip_grad_norm(inputs[c], max_norm);
    const double torch_norm = (*torch)[c].at("norm").item();
    EXPECT_LE(std::abs(norm - torch_norm) / torch_norm, 1e-12);
    for (size_t i = 0; i < inputs[c].size(); ++i) {
      EXPECT_LE(normwise_relative_error(inputs[c][i].grad(), (*torch)[c].at(absl::StrCat("grad.", i))),
                clip_cases[c].tolerance)
          << "grad " << i;
    }
  }
}

TEST(GradClip, ReturnsTheNormBeforeClippingAndScalesToMaxNorm) {
  std::vector<Tensor> parameters = parameters_with_grads(DType::kF32, 1);
  const double norm = std::sqrt(grad_sum_of_squares(parameters));
  EXPECT_DOUBLE_EQ(clip_grad_norm(parameters, 0.25 * norm), norm);
  EXPECT_NEAR(std::sqrt(grad_sum_of_squares(parameters)), 0.25 * norm, 1e-6 * norm);
}

TEST(GradClip, UnderTheLimitOrDisabledLeavesGradientsBitForBit) {
  std::vector<Tensor> parameters = parameters_with_grads(DType::kBF16, 2);
  std::vector<Tensor> before;
  for (const Tensor& parameter : parameters) before.push_back(parameter.grad().clone());
  const double norm = std::sqrt(grad_sum_of_squares(parameters));
  EXPECT_EQ(clip_grad_norm(parameters, norm * 1.5), norm);
  EXPECT_EQ(clip_grad_norm(parameters, 0.0), norm);  // max_norm 0 disables clipping
  for (size_t i = 0; i < parameters.size(); ++i) EXPECT_TRUE(same_values(parameters[i].grad(), before[i]));
}

TEST(GradClip, SkipsParametersWithoutGradient) {
  std::vector<Tensor> parameters = parameters_with_grads(DType::kF32, 3);
  const double with_grads = grad_sum_of_squares(parameters);
  parameters.push_back(Tensor::ones({5}).set_requires_grad(true));  // no .grad()
  EXPECT_EQ(grad_sum_of_squares(parameters), with_grads);
  clip_grad_norm(parameters, 0.1);
  EXPECT_FALSE(parameters.back().grad().defined());
}

TEST(GradClip, StridedBf16GradientsScaleLikeContiguousOnes) {
  // The op path (strided or device gradients) scales in f32 as the CPU loop does.
  const Tensor values = random_normal({6, 4}, 5, 1.0, DType::kBF16);
  Tensor contiguous = Tensor::zeros({6, 4}, DType::kBF16).set_requires_grad(true);
  contiguous.set_grad(values.clone());
  Tensor strided = Tensor::zeros({6, 4}, DType::kBF16).set_requires_grad(true);
  strided.set_grad(values.t().contiguous().t());
  ASSERT_FALSE(strided.grad().is_contiguous());
  EXPECT_EQ(clip_grad_norm({contiguous}, 0.7), clip_grad_norm({strided}, 0.7));
  EXPECT_TRUE(same_values(strided.grad(), contiguous.grad()));
  EXPECT_FALSE(same_values(contiguous.grad(), values));
}

TEST(GradClip, SumOfSquaresIsTheSameBitsForAnyThreadCount) {
  Tensor parameter = Tensor::zeros({300000}).set_requires_grad(true);
  parameter.set_grad(random_normal({300000}, 4));
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const double one = grad_sum_of_squares({parameter});
  omp_set_num_threads(3);
  const double three = grad_sum_of_squares({parameter});
  omp_set_num_threads(threads);
  EXPECT_EQ(one, three);
  // And it is the f64 sum: within a few ulps of a plain sequential sum.
  double sequential = 0;
  for (double value : parameter.grad().to_vector<double>()) sequential += value * value;
  EXPECT_NEAR(one, sequential, 1e-12 * sequential);
}

}  // namespace
}  // namespace sy::testing
