// matmul and linear through the op harness: 2-D, batched, broadcast batches, vectors, and
// transposed (non-contiguous) operands read by BLAS without copies.
#include "core/ops/ops.h"
#include "tests/support/op_harness.h"

namespace sy::testing {
namespace {

// Naive batched product with broadcast batch dims over HostArrays of rank >= 2.
HostArray matmul_reference(const HostArray& a, const HostArray& b) {
  const int64_t m = a.shape[a.shape.size() - 2], k = a.shape.back(), n = b.shape.back();
  Shape a_batch(a.shape.begin(), a.shape.end() - 2), b_batch(b.shape.begin(), b.shape.end() - 2);
  HostArray batch_a{a_batch, std::vector<double>(shape_numel(a_batch))};
  HostArray batch_b{b_batch, std::vector<double>(shape_numel(b_batch))};
  for (int64_t i = 0; i < batch_a.numel(); ++i) batch_a.values[i] = static_cast<double>(i);
  for (int64_t i = 0; i < batch_b.numel(); ++i) batch_b.values[i] = static_cast<double>(i);
  // Which batch of a and of b each output batch reads.
  HostArray pick_a = broadcast_reference(batch_a, batch_b, [](double x, double) { return x; });
  HostArray pick_b = broadcast_reference(batch_a, batch_b, [](double, double y) { return y; });
  Shape out_shape = pick_a.shape;
  out_shape.insert(out_shape.end(), {m, n});
  HostArray out{out_shape, std::vector<double>(shape_numel(out_shape), 0.0)};
  for (int64_t batch = 0; batch < pick_a.numel(); ++batch) {
    int64_t ia = static_cast<int64_t>(pick_a.values[batch]), ib = static_cast<int64_t>(pick_b.values[batch]);
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (int64_t p = 0; p < k; ++p) s += a.values[(ia * m + i) * k + p] * b.values[(ib * k + p) * n + j];
        out.values[(batch * m + i) * n + j] = s;
      }
    }
  }
  return out;
}

OpCase matmul_case(std::string name, Shape a, Shape b, bool cuda = false) {
  return {.name = std::move(name),
          .inputs = {{.shape = std::move(a)}, {.shape = std::move(b)}},
          .op = [](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); },
          .reference = [](const std::vector<HostArray>& x) { return matmul_reference(x[0], x[1]); },
          .cuda = cuda};
}

std::vector<OpCase> matmul_cases() {
  return {
      matmul_case("Square", {4, 4}, {4, 4}, true),
      matmul_case("Rectangular", {3, 5}, {5, 2}, true),
      matmul_case("Batched", {2, 3, 4}, {2, 4, 5}, true),
      matmul_case("BroadcastBatch", {2, 1, 3, 4}, {3, 4, 2}),
      matmul_case("SharedRightOperand", {2, 3, 4}, {4, 5}),
      {.name = "TransposedOperands",
       .inputs = {{.shape = {5, 3}}, {.shape = {4, 5}}},
       .op = [](const std::vector<Tensor>& x) { return matmul(x[0].t(), x[1].t()); },
       .reference = [](const std::vector<HostArray>& x) {
         HostArray at{{3, 5}, std::vector<double>(15)}, bt{{5, 4}, std::vector<double>(20)};
         for (int i = 0; i < 5; ++i) {
           for (int j = 0; j < 3; ++j) at.values[j * 5 + i] = x[0].values[i * 3 + j];
           for (int j = 0; j < 4; ++j) bt.values[i * 4 + j] = x[1].values[j * 5 + i];
         }
         return matmul_reference(at, bt);
       }},
      {.name = "VectorTimesMatrix",
       .inputs = {{.shape = {4}}, {.shape = {4, 3}}},
       .op = [](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); },
       .reference = [](const std::vector<HostArray>& x) {
         HostArray out = matmul_reference({{1, 4}, x[0].values}, x[1]);
         out.shape = {3};
         return out;
       }},
      {.name = "LinearWithBias",
       .inputs = {{.shape = {2, 3, 4}}, {.shape = {5, 4}}, {.shape = {5}}},
       .op = [](const std::vector<Tensor>& x) { return linear(x[0], x[1], x[2]); },
       .reference = [](const std::vector<HostArray>& x) {
         HostArray out{{2, 3, 5}, std::vector<double>(30)};
         for (int r = 0; r < 6; ++r) {
           for (int o = 0; o < 5; ++o) {
             double s = x[2].values[o];
             for (int i = 0; i < 4; ++i) s += x[0].values[r * 4 + i] * x[1].values[o * 4 + i];
             out.values[r * 5 + o] = s;
           }
         }
         return out;
       }},
  };
}

INSTANTIATE_TEST_SUITE_P(Matmul, OpCaseTest, ::testing::ValuesIn(matmul_cases()), OpCaseName);

TEST(Matmul, Bf16ComputesInF32) {
  Tensor a = Tensor::from_vector(std::vector<float>{1, 2, 3, 4}, {2, 2}, DType::kBF16);
  Tensor c = matmul(a, a);
  EXPECT_EQ(c.dtype(), DType::kBF16);
  EXPECT_EQ(c.to_vector<float>(), (std::vector<float>{7, 10, 15, 22}));
}

TEST(Matmul, InnerSizeMismatchNamesShapes) {
  try {
    matmul(Tensor::zeros({2, 3}), Tensor::zeros({4, 5}));
    FAIL() << "expected an error";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("(2, 3)"), std::string::npos) << error.what();
    EXPECT_NE(std::string(error.what()).find("(4, 5)"), std::string::npos) << error.what();
  }
}

TEST(Matmul, LargeProductMatchesNaive) {
  // Large enough for OpenBLAS's threaded path; compared against f64.
  Tensor a = Tensor::from_vector(std::vector<double>(300 * 200, 0.5), {300, 200});
  Tensor b = Tensor::from_vector(std::vector<double>(200 * 100, 0.25), {200, 100});
  Tensor c = matmul(a, b);
  for (float v : c.to_vector<float>()) ASSERT_NEAR(v, 200 * 0.125, 1e-3);
}

}  // namespace
}  // namespace sy::testing
