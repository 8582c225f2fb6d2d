// Reductions through the op harness: sum, mean, var, max, min along dims with keepdim.
#include <cmath>

#include "core/ops/ops.h"
#include "tests/support/op_harness.h"

namespace sy::testing {
namespace {

// Reduces x over `dims` with f applied to the collected values of each output position.
HostArray reduce_reference(const HostArray& x, std::vector<int64_t> dims, bool keepdim,
                           const std::function<double(const std::vector<double>&)>& f) {
  const int64_t rank = static_cast<int64_t>(x.shape.size());
  for (int64_t& d : dims) d = d < 0 ? d + rank : d;
  auto reduced = [&](int64_t d) { return std::find(dims.begin(), dims.end(), d) != dims.end(); };
  Shape kept = x.shape;
  for (int64_t d : dims) kept[d] = 1;
  std::vector<std::vector<double>> groups(shape_numel(kept));
  std::vector<int64_t> position(rank);
  for (int64_t flat = 0; flat < x.numel(); ++flat) {
    int64_t rest = flat;
    for (int64_t d = rank - 1; d >= 0; --d) {
      position[d] = rest % x.shape[d];
      rest /= x.shape[d];
    }
    int64_t out = 0;
    for (int64_t d = 0; d < rank; ++d) out = out * kept[d] + (reduced(d) ? 0 : position[d]);
    groups[out].push_back(x.values[flat]);
  }
  HostArray result{{}, {}};
  for (int64_t d = 0; d < rank; ++d) {
    if (!reduced(d)) result.shape.push_back(x.shape[d]);
    else if (keepdim) result.shape.push_back(1);
  }
  for (const auto& group : groups) result.values.push_back(f(group));
  return result;
}

double total(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s;
}
double average(const std::vector<double>& v) { return total(v) / static_cast<double>(v.size()); }
double variance(const std::vector<double>& v) {
  double m = average(v), s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return s / static_cast<double>(v.size() - 1);
}
double largest(const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); }
double smallest(const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }

OpCase reduce_case(std::string name, Shape shape, std::vector<int64_t> dims, bool keepdim,
                   std::function<Tensor(const Tensor&)> op, double (*f)(const std::vector<double>&)) {
  return {.name = std::move(name),
          .inputs = {{.shape = std::move(shape)}},
          .op = [op](const std::vector<Tensor>& x) { return op(x[0]); },
          .reference = [dims, keepdim, f](const std::vector<HostArray>& x) {
            return reduce_reference(x[0], dims, keepdim, f);
          },
          .cuda = true,
          .cuda_tolerance = 1e-5};
}

std::vector<OpCase> reduce_cases() {
  return {
      reduce_case("SumLastDim", {3, 4}, {-1}, false, [](const Tensor& x) { return sum(x, {-1}); }, total),
      reduce_case("SumFirstDimKeep", {3, 4}, {0}, true, [](const Tensor& x) { return sum(x, {0}, true); }, total),
      reduce_case("SumTwoDims", {2, 3, 4}, {0, 2}, false, [](const Tensor& x) { return sum(x, {0, 2}); }, total),
      reduce_case("SumAll", {2, 3, 4}, {0, 1, 2}, false, [](const Tensor& x) { return sum(x); }, total),
      reduce_case("MeanMiddle", {2, 3, 4}, {1}, false, [](const Tensor& x) { return mean(x, {1}); }, average),
      reduce_case("MeanAll", {5, 3}, {0, 1}, false, [](const Tensor& x) { return mean(x); }, average),
      reduce_case("VarLastKeep", {3, 5}, {-1}, true, [](const Tensor& x) { return var(x, {-1}, 1, true); }, variance),
      reduce_case("VarTwoDims", {3, 2, 4}, {0, 2}, false, [](const Tensor& x) { return var(x, {0, 2}); }, variance),
      reduce_case("MaxLastDim", {4, 6}, {-1}, false, [](const Tensor& x) { return max(x, -1); }, largest),
      reduce_case("MaxFirstDimKeep", {4, 6}, {0}, true, [](const Tensor& x) { return max(x, 0, true); }, largest),
      reduce_case("MinMiddle", {2, 5, 3}, {1}, false, [](const Tensor& x) { return min(x, 1); }, smallest),
  };
}

INSTANTIATE_TEST_SUITE_P(Reduce, OpCaseTest, ::testing::ValuesIn(reduce_cases()), OpCaseName);

TEST(Reduce, ArgmaxFirstMaximum) {
  Tensor x = Tensor::from_vector(std::vector<float>{1, 5, 5, 2, 7, 0, 7, 7}, {2, 4});
  EXPECT_EQ(argmax(x, 1).to_vector<int64_t>(), (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(argmax(x, 0).to_vector<int64_t>(), (std::vector<int64_t>{1, 0, 1, 1}));
  EXPECT_EQ(argmax(x, 1, true).shape(), (Shape{2, 1}));
}

TEST(Reduce, MaxGradientGoesToFirstMaximumOnly) {
  Tensor x = Tensor::from_vector(std::vector<double>{3, 1, 3, 2}, {4}, DType::kF64);
  x.set_requires_grad(true);
  max(x, 0).backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{1, 0, 0, 0}));
}

TEST(Reduce, LargeSumIsAccurateInF32) {
  // 1M values of 0.1: a naive f32 running sum drifts by ~1%; the kernel accumulates in f64.
  Tensor x = Tensor::full({1 << 20}, 0.1);
  EXPECT_NEAR(sum(x).item(), 0.1f * (1 << 20), 0.5);
}

}  // namespace
}  // namespace sy::testing
