// Balancing losses: harness cases (naive reference, f64 finite differences through the scores
// and logits) and hand-computed values for balanced, skewed and per-sequence routing.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "core/ops/ops.h"
#include "moe/aux_losses.h"
#include "tests/support/op_harness.h"

namespace sy::testing {
namespace {

// (N, K) distinct experts per row, fixed by `seed`.
Tensor random_topk_indices(int64_t N, int64_t K, int64_t E, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int64_t> values;
  for (int64_t n = 0; n < N; ++n) {
    std::vector<int64_t> experts(E);
    std::iota(experts.begin(), experts.end(), 0);
    std::shuffle(experts.begin(), experts.end(), rng);
    values.insert(values.end(), experts.begin(), experts.begin() + K);
  }
  return Tensor::from_vector(values, {N, K}, DType::kI64);
}

// E * sum_i f_i P_i over rows [first, first + rows) of scores (N, E) and indices (N, K).
double reference_balance(const HostArray& scores, const HostArray& indices, int64_t first, int64_t rows) {
  const int64_t E = scores.shape[1], K = indices.shape[1];
  std::vector<double> counts(E, 0.0), mean_scores(E, 0.0);
  for (int64_t n = first; n < first + rows; ++n) {
    for (int64_t k = 0; k < K; ++k) counts[static_cast<int64_t>(indices.values[n * K + k])] += 1;
    for (int64_t e = 0; e < E; ++e) mean_scores[e] += scores.values[n * E + e] / rows;
  }
  double loss = 0;
  for (int64_t e = 0; e < E; ++e) loss += counts[e] / (rows * K) * mean_scores[e];
  return E * loss;
}

std::vector<OpCase> aux_loss_cases() {
  const int64_t N = 12, E = 5, K = 2, B = 3;
  InputSpec scores{.shape = {N, E}, .low = 0.05, .high = 1};
  InputSpec indices{.shape = {N, K}, .differentiable = false, .dtype = DType::kI64,
                    .make = [] { return random_topk_indices(N, K, E, 11); }};
  InputSpec counts{.shape = {E}, .differentiable = false, .dtype = DType::kI64, .make = [] {
                     return Tensor::from_vector(std::vector<int64_t>{40, 7, 0, 21, 12}, {E}, DType::kI64);
                   }};
  return {
      {.name = "LoadBalancingMicroBatch",
       .inputs = {scores, indices},
       .op = [](const std::vector<Tensor>& in) { return load_balancing_loss(in[0], in[1]); },
       .reference = [](const std::vector<HostArray>& in) {
         return HostArray{{}, {reference_balance(in[0], in[1], 0, in[0].shape[0])}};
       }},
      {.name = "LoadBalancingThroughSoftmax",
       .inputs = {{.shape = {N, E}, .low = -2, .high = 2}, indices},
       .op = [](const std::vector<Tensor>& in) { return load_balancing_loss(softmax(in[0], -1), in[1]); },
       .reference = nullptr},
      {.name = "LoadBalancingSequenceB3",
       .inputs = {scores, indices},
       .op = [B](const std::vector<Tensor>& in) { return sequence_load_balancing_loss(in[0], in[1], B); },
       .reference = [B](const std::vector<HostArray>& in) {
         const int64_t T = in[0].shape[0] / B;
         double total = 0;
         for (int64_t b = 0; b < B; ++b) total += reference_balance(in[0], in[1], b * T, T);
         return HostArray{{}, {total / B}};
       }},
      {.name = "LoadBalancingGlobalCounts",
       .inputs = {scores, counts},
       .op = [](const std::vector<Tensor>& in) { return global_load_balancing_loss(in[0], in[1], 80); },
       .reference = [](const std::vector<HostArray>& in) {
         const int64_t rows = in[0].shape[0], E = in[0].shape[1];
         double loss = 0;
         for (int64_t e = 0; e < E; ++e) {
           double mean_score = 0;
           for (int64_t n = 0; n < rows; ++n) mean_score += in[0].values[n * E + e] / rows;
           loss += in[1].values[e] / 80 * mean_score;
         }
         return HostArray{{}, {E * loss}};
       }},
      {.name = "RouterZLoss",
       .inputs = {{.shape = {N, E}, .low = -3, .high = 3}},
       .op = [](const std::vector<Tensor>& in) { return router_z_loss(in[0]); },
       .reference = [](const std::vector<HostArray>& in) {
         const int64_t rows = in[0].shape[0], E = in[0].shape[1];
         double loss = 0;
         for (int64_t n = 0; n < rows; ++n) {
           double total = 0;
           for (int64_t e = 0; e < E; ++e) total += std::exp(in[0].values[n * E + e]);
           loss += std::log(total) * std::log(total) / rows;
         }
         return HostArray{{}, {loss}};
       }},
  };
}

INSTANTIATE_TEST_SUITE_P(AuxLosses, OpCaseTest, ::testing::ValuesIn(aux_loss_cases()), OpCaseName);

Tensor f64(std::vector<double> values, Shape shape) { return Tensor::from_vector(values, shape, DType::kF64); }
Tensor i64(std::vector<int64_t> values, Shape shape) { return Tensor::from_vector(values, shape, DType::kI64); }

TEST(LoadBalancingLoss, BalancedRoutingGivesExactlyOne) {
  // f_i = P_i = 1/E: E * E * (1/E)^2 = 1, for K = 1 and K = 2.
  Tensor uniform = Tensor::full({4, 4}, 0.25, DType::kF64);
  EXPECT_DOUBLE_EQ(load_balancing_loss(uniform, i64({0, 1, 2, 3}, {4, 1})).item(), 1.0);
  EXPECT_DOUBLE_EQ(load_balancing_loss(uniform, i64({0, 1, 2, 3, 0, 1, 2, 3}, {4, 2})).item(), 1.0);
  // Confident scores that agree with a balanced routing: P is still 1/E each.
  Tensor confident = f64({1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1}, {4, 4});
  EXPECT_DOUBLE_EQ(load_balancing_loss(confident, i64({0, 1, 2, 3}, {4, 1})).item(), 1.0);
}

TEST(LoadBalancingLoss, SkewedRoutingIsLarger) {
  // Every token to expert 0 with all its score: f = P = (1, 0, 0, 0) -> E * 1 = 4.
  Tensor collapsed = f64({1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0}, {4, 4});
  EXPECT_DOUBLE_EQ(load_balancing_loss(collapsed, i64({0, 0, 0, 0}, {4, 1})).item(), 4.0);
  // Half skewed: 3 of 4 tokens to expert 0 with scores (0.7, 0.1, 0.1, 0.1) each:
  // f = (3/4, 1/4, 0, 0), P = (0.7, 0.1, 0.1, 0.1) -> 4 * (0.525 + 0.025) = 2.2.
  Tensor scores = Tensor::from_vector(std::vector<double>{0.7, 0.1, 0.1, 0.1}, {1, 4}, DType::kF64).expand({4, 4});
  EXPECT_NEAR(load_balancing_loss(scores, i64({0, 0, 1, 0}, {4, 1})).item(), 2.2, 1e-14);
}

TEST(LoadBalancingLoss, GradientIsEFOverNPerToken) {
  // d loss / d scores[n, i] = E * f_i / N: only P carries gradient.
  Tensor scores = f64({0.1, 0.2, 0.3, 0.4, 0.4, 0.3, 0.2, 0.1, 0.25, 0.25, 0.25, 0.25}, {3, 4});
  scores.set_requires_grad(true);
  load_balancing_loss(scores, i64({0, 1, 0, 2, 0, 3}, {3, 2})).backward();
  // f = (3/6, 1/6, 1/6, 1/6), E / N = 4/3.
  std::vector<double> row = {4.0 / 3 * 3 / 6, 4.0 / 3 / 6, 4.0 / 3 / 6, 4.0 / 3 / 6};
  std::vector<double> grad = scores.grad().to_vector<double>();
  for (int64_t i = 0; i < 12; ++i) EXPECT_NEAR(grad[i], row[i % 4], 1e-14) << i;
}

TEST(SequenceLoadBalancingLoss, DiffersFromMicroBatchWhenSequencesSkew) {
  // Sequence 0 sends both tokens to expert 0, sequence 1 both to expert 1. Over the micro-
  // batch that is balanced (f = P = 1/2 -> 1); per sequence f = (1, 0), P = (0.9, 0.1) ->
  // 2 * 0.9 = 1.8 for each, mean 1.8.
  Tensor scores = f64({0.9, 0.1, 0.9, 0.1, 0.1, 0.9, 0.1, 0.9}, {4, 2});
  Tensor indices = i64({0, 0, 1, 1}, {4, 1});
  EXPECT_NEAR(load_balancing_loss(scores, indices).item(), 1.0, 1e-14);
  EXPECT_NEAR(sequence_load_balancing_loss(scores, indices, 2).item(), 1.8, 1e-14);
  // One sequence is the micro-batch scope.
  EXPECT_NEAR(sequence_load_balancing_loss(scores, indices, 1).item(), 1.0, 1e-14);
}

TEST(GlobalLoadBalancingLoss, UsesAccumulatedCounts) {
  Tensor scores = f64({0.8, 0.2, 0.8, 0.2}, {2, 2});
  // f = (30, 10) / 40, P = (0.8, 0.2): 2 * (0.6 + 0.05) = 1.3.
  EXPECT_NEAR(global_load_balancing_loss(scores, i64({30, 10}, {2}), 40).item(), 1.3, 1e-14);
  // Counted from this micro-batch alone it is the micro-batch loss.
  Tensor indices = i64({0, 1, 0, 0}, {2, 2});
  EXPECT_NEAR(global_load_balancing_loss(scores, count_tokens_per_expert(indices, 2), 4).item(),
              load_balancing_loss(scores, indices).item(), 1e-14);
}

TEST(RouterZLoss, HandValueAndLargeLogits) {
  // Rows logsumexp: ln 2 and ln(3 + 1) = 2 ln 2 -> mean((ln 2)^2, 4 (ln 2)^2) = 2.5 (ln 2)^2.
  double ln2 = std::log(2.0);
  EXPECT_NEAR(router_z_loss(f64({0, 0, std::log(3.0), 0}, {2, 2})).item(), 2.5 * ln2 * ln2, 1e-14);
  // No overflow: logsumexp(1000, 1000) = 1000 + ln 2.
  EXPECT_NEAR(router_z_loss(Tensor::full({1, 2}, 1000.0, DType::kF64)).item(), (1000 + ln2) * (1000 + ln2), 1e-9);
}

TEST(CountTokensPerExpert, BincountOfAllSlots) {
  Tensor counts = count_tokens_per_expert(i64({0, 2, 2, 3}, {2, 2}), 5);
  EXPECT_EQ(counts.dtype(), DType::kI64);
  EXPECT_EQ(counts.to_vector<int64_t>(), (std::vector<int64_t>{1, 0, 2, 1, 0}));
  EXPECT_THROW(count_tokens_per_expert(i64({0, 5}, {1, 2}), 5), Error);  // index >= E
}

TEST(AuxLossErrors, ShapesAreChecked) {
  Tensor scores = Tensor::full({4, 3}, 1.0 / 3, DType::kF64);
  EXPECT_THROW(load_balancing_loss(scores, i64({0, 1, 2}, {3, 1})), Error);            // N mismatch
  EXPECT_THROW(load_balancing_loss(scores, f64({0, 1, 2, 0}, {4, 1})), Error);         // float indices
  EXPECT_THROW(load_balancing_loss(scores.reshape({12}), i64({0}, {1, 1})), Error);    // 1-D scores
  EXPECT_THROW(sequence_load_balancing_loss(scores, i64({0, 1, 2, 0}, {4, 1}), 3), Error);  // 4 % 3
  EXPECT_THROW(global_load_balancing_loss(scores, i64({1, 2}, {2}), 3), Error);        // E mismatch
  EXPECT_THROW(global_load_balancing_loss(scores, i64({1, 1, 1}, {3}), 0), Error);     // no slots
  EXPECT_THROW(router_z_loss(Tensor::zeros({3})), Error);
}

}  // namespace
}  // namespace sy::testing
