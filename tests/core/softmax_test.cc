// softmax / log_softmax through the op harness, plus numerics the harness does not reach.
#include <cmath>
#include <limits>

#include "core/ops/ops.h"
#include "tests/support/op_harness.h"

namespace sy::testing {
namespace {

// Naive reference: for each line along `dim`, exp(x - max) / sum, or its log.
HostArray softmax_reference(const HostArray& x, int64_t dim, bool log) {
  const int64_t dims = static_cast<int64_t>(x.shape.size());
  if (dim < 0) dim += dims;
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= x.shape[d];
  for (int64_t d = dim + 1; d < dims; ++d) inner *= x.shape[d];
  const int64_t length = x.shape[dim];
  HostArray out = x;
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t i = 0; i < inner; ++i) {
      auto at = [&](int64_t l) { return (o * length + l) * inner + i; };
      double m = -INFINITY;
      for (int64_t l = 0; l < length; ++l) m = std::max(m, x.values[at(l)]);
      double s = 0;
      for (int64_t l = 0; l < length; ++l) s += std::exp(x.values[at(l)] - m);
      for (int64_t l = 0; l < length; ++l) {
        const double shifted = x.values[at(l)] - m;
        out.values[at(l)] = log ? shifted - std::log(s) : std::exp(shifted) / s;
      }
    }
  }
  return out;
}

OpCase softmax_case(std::string name, Shape shape, int64_t dim, bool log, bool cuda) {
  return {.name = std::move(name),
          .inputs = {{.shape = std::move(shape), .low = -3, .high = 3}},
          .op = [dim, log](const std::vector<Tensor>& x) { return log ? log_softmax(x[0], dim) : softmax(x[0], dim); },
          .reference = [dim, log](const std::vector<HostArray>& x) { return softmax_reference(x[0], dim, log); },
          .cuda = cuda};
}

std::vector<OpCase> softmax_cases() {
  return {
      softmax_case("SoftmaxLastDim", {3, 7}, -1, false, true),
      softmax_case("SoftmaxLastDim3d", {2, 3, 5}, 2, false, true),
      softmax_case("SoftmaxMiddleDim", {2, 4, 3}, 1, false, false),
      softmax_case("SoftmaxFirstDim", {5, 3}, 0, false, false),
      softmax_case("LogSoftmaxLastDim", {4, 6}, -1, true, false),
      softmax_case("LogSoftmaxMiddleDim", {2, 5, 3}, -2, true, false),
      softmax_case("SoftmaxLongRow", {2, 257}, -1, false, true),
  };
}

INSTANTIATE_TEST_SUITE_P(Softmax, OpCaseTest, ::testing::ValuesIn(softmax_cases()), OpCaseName);

TEST(Softmax, LargeLogitsStayFinite) {
  Tensor x = Tensor::from_vector(std::vector<double>{1000, 1001, 1002, -1000}, {1, 4}, DType::kF32);
  std::vector<double> y = softmax(x).to_vector<double>();
  std::vector<double> log_y = log_softmax(x).to_vector<double>();
  const double s = 1 + std::exp(-1.0) + std::exp(-2.0);
  EXPECT_NEAR(y[2], 1 / s, 1e-6);
  EXPECT_NEAR(y[0], std::exp(-2.0) / s, 1e-6);
  EXPECT_EQ(y[3], 0.0);
  EXPECT_NEAR(log_y[2], -std::log(s), 1e-5);
  EXPECT_NEAR(log_y[3], -2002 - std::log(s), 1e-2);
  for (double v : log_y) EXPECT_TRUE(std::isfinite(v));
}

TEST(Softmax, ParallelRowsMatchOneRowAtATime) {
  // 256 rows of 512: large enough for the kernel to split rows over threads.
  std::vector<double> values(256 * 512);
  for (size_t i = 0; i < values.size(); ++i) values[i] = std::sin(0.37 * static_cast<double>(i)) * 4;
  Tensor x = Tensor::from_vector(values, {256, 512});
  Tensor all = softmax(x);
  Tensor row = softmax(x.narrow(0, 200, 1));
  EXPECT_EQ(all.narrow(0, 200, 1).contiguous().to_vector<float>(), row.to_vector<float>());
  Tensor sums = sum(all, {1});
  for (double s : sums.to_vector<double>()) EXPECT_NEAR(s, 1.0, 1e-5);
}

TEST(Softmax, Bf16ComputesInF32) {
  Tensor x = Tensor::from_vector(std::vector<double>{0.5, -1.25, 2.0, 0.0, 3.5, -0.75}, {2, 3});
  Tensor expected = softmax(x);
  Tensor got = softmax(x.to(DType::kBF16));
  EXPECT_EQ(got.dtype(), DType::kBF16);
  // bf16 keeps 8 significant bits: relative error below 2^-8.
  EXPECT_LT(max_relative_error(got.to(DType::kF64), expected.to(DType::kF64)), 4e-3);
  Tensor got_log = log_softmax(x.to(DType::kBF16));
  EXPECT_LT(max_relative_error(got_log.to(DType::kF64), log_softmax(x).to(DType::kF64)), 1e-2);
}

TEST(Softmax, IntegerInputIsRejected) {
  try {
    softmax(Tensor::zeros({2, 3}, DType::kI64));
    FAIL() << "expected an error";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("floating"), std::string::npos) << error.what();
  }
}

}  // namespace
}  // namespace sy::testing
