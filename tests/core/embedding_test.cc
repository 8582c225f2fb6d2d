// embedding through the op harness (lookup, scatter-add gradient with repeated ids), the
// parallel backward against a naive sum, and the out-of-range message.
#include <gtest/gtest.h>

#include <string>

#include "core/ops/ops.h"
#include "tests/support/op_harness.h"

namespace sy::testing {
namespace {

// Reference: out[..., c] = weight[ids[...], c].
HostArray embedding_reference(const std::vector<HostArray>& x) {
  const HostArray& ids = x[0];
  const HostArray& weight = x[1];
  const int64_t C = weight.shape[1];
  Shape shape = ids.shape;
  shape.push_back(C);
  HostArray out{shape, std::vector<double>(ids.numel() * C)};
  for (int64_t n = 0; n < ids.numel(); ++n) {
    const int64_t row = static_cast<int64_t>(ids.values[n]);
    for (int64_t c = 0; c < C; ++c) out.values[n * C + c] = weight.values[weight.index({row, c})];
  }
  return out;
}

OpCase embedding_case(std::string name, std::vector<int64_t> ids, Shape ids_shape, DType ids_dtype,
                      Shape weight_shape) {
  return {.name = std::move(name),
          .inputs = {{.shape = ids_shape,
                      .differentiable = false,
                      .dtype = ids_dtype,
                      .make = [ids, ids_shape, ids_dtype] { return Tensor::from_vector(ids, ids_shape, ids_dtype); }},
                     {.shape = weight_shape}},
          .op = [](const std::vector<Tensor>& x) { return embedding(x[0], x[1]); },
          .reference = embedding_reference};
}

std::vector<OpCase> embedding_cases() {
  return {
      // Ids repeat (3 three times, 0 twice) so the gradient must sum rows, and id V-1 appears.
      embedding_case("Ids2dI64RepeatedRows", {3, 0, 3, 4, 0, 3}, {2, 3}, DType::kI64, {5, 4}),
      embedding_case("Ids1dI32", {1, 6, 2, 2, 0, 5, 1}, {7}, DType::kI32, {7, 3}),
      embedding_case("Ids3dSomeRowsUnused", {0, 2, 2, 0}, {2, 1, 2}, DType::kI64, {6, 5}),
  };
}

INSTANTIATE_TEST_SUITE_P(Embedding, OpCaseTest, ::testing::ValuesIn(embedding_cases()), OpCaseName);

TEST(Embedding, ParallelBackwardMatchesNaiveScatterAddAndIsDeterministic) {
  // N * C = 600 * 256 is above the kernel's parallel threshold.
  const int64_t V = 50, C = 256, N = 600;
  std::vector<int64_t> ids(N);
  for (int64_t n = 0; n < N; ++n) ids[n] = (n * 7 + n / 3) % V;
  Tensor id_tensor = Tensor::from_vector(ids, {N}, DType::kI64);
  std::vector<double> grad_values(N * C);
  for (int64_t i = 0; i < N * C; ++i) grad_values[i] = std::sin(0.37 * static_cast<double>(i));
  Tensor grad_out = Tensor::from_vector(grad_values, {N, C}, DType::kF32);

  auto weight_grad = [&] {
    Tensor weight = Tensor::zeros({V, C}).set_requires_grad(true);
    embedding(id_tensor, weight).backward(grad_out);
    return weight.grad().to_vector<float>();
  };
  std::vector<float> first = weight_grad();
  std::vector<double> expected(V * C, 0.0);
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t c = 0; c < C; ++c) expected[ids[n] * C + c] += static_cast<float>(grad_values[n * C + c]);
  }
  for (int64_t i = 0; i < V * C; ++i) ASSERT_NEAR(first[i], expected[i], 1e-4) << "element " << i;
  EXPECT_EQ(weight_grad(), first) << "a second backward gave different bits";
}

TEST(Embedding, Bf16WeightLooksUpExactRowsAndGivesBf16Gradient) {
  Tensor weight = Tensor::from_vector(std::vector<float>{1.5f, -2.0f, 0.25f, 8.0f}, {2, 2}, DType::kBF16);
  weight.set_requires_grad(true);
  Tensor out = embedding(Tensor::from_vector(std::vector<int>{1, 1, 0}, {3}, DType::kI32), weight);
  EXPECT_EQ(out.dtype(), DType::kBF16);
  EXPECT_EQ(out.to_vector<float>(), (std::vector<float>{0.25f, 8.0f, 0.25f, 8.0f, 1.5f, -2.0f}));
  sum(out.to(DType::kF32)).backward();
  EXPECT_EQ(weight.grad().dtype(), DType::kBF16);
  EXPECT_EQ(weight.grad().to_vector<float>(), (std::vector<float>{1, 1, 2, 2}));
}

TEST(Embedding, OutOfRangeIdNamesTheIdAndV) {
  Tensor weight = Tensor::zeros({4, 3});
  for (int64_t bad : {4, -1}) {
    try {
      embedding(Tensor::from_vector(std::vector<int64_t>{0, bad}, {2}, DType::kI64), weight);
      FAIL() << "expected an out-of-range error for id " << bad;
    } catch (const Error& error) {
      const std::string message = error.what();
      EXPECT_NE(message.find("id " + std::to_string(bad)), std::string::npos) << message;
      EXPECT_NE(message.find("V = 4"), std::string::npos) << message;
    }
  }
}

}  // namespace
}  // namespace sy::testing
