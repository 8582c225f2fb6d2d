// Local dispatch: the plan's order (expert-major, token-stable), capacity arithmetic, both
// drop policies on hand-built routings, padding, dropped counts, the permute/unpermute round
// trip, and gradients wrt x and the routing weights by finite differences in f64.
#include <cmath>

#include "core/ops/ops.h"
#include "moe/dispatch_local.h"
#include "tests/support/op_harness.h"

namespace sy::testing {
namespace {

Tensor indices(const std::vector<int64_t>& values, int64_t N, int64_t K) {
  return Tensor::from_vector(values, {N, K}, DType::kI64);
}

TEST(DispatchPlan, ExpertMajorTokenStableOrder) {
  // Token t routes to experts row t; slot = t * K + k.
  Tensor topk = indices({2, 0, 0, 1, 2, 1, 0, 2}, 4, 2);
  DispatchPlan plan = plan_dispatch(topk, Tensor::full({4, 2}, 0.5), 3, 0.0, DropPolicy::kProbs, false);
  EXPECT_EQ(plan.token_index.to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 3, 1, 2, 0, 2, 3}));
  EXPECT_EQ(plan.slot_index.to_vector<int64_t>(), (std::vector<int64_t>{1, 2, 6, 3, 5, 0, 4, 7}));
  EXPECT_EQ(plan.tokens_per_expert, (std::vector<int64_t>{3, 2, 3}));
  EXPECT_EQ(plan.dropped, 0);
  EXPECT_EQ(plan.padded, 0);
}

TEST(DispatchPlan, UnusedExpertGetsNoRows) {
  Tensor topk = indices({3, 0, 3, 0}, 2, 2);
  DispatchPlan plan = plan_dispatch(topk, Tensor::full({2, 2}, 0.5), 4, 0.0, DropPolicy::kProbs, false);
  EXPECT_EQ(plan.tokens_per_expert, (std::vector<int64_t>{2, 0, 0, 2}));
  EXPECT_EQ(plan.token_index.to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 0, 1}));
}

// capacity = ceil(capacity_factor * N * K / E): with padding every expert holds exactly the
// capacity, and routing every slot to expert 0 drops all but capacity of them.
TEST(DispatchPlan, CapacityArithmetic) {
  struct Case {
    double factor;
    int64_t N, K, E, capacity;
  };
  for (const Case& c : {Case{1.0, 5, 2, 4, 3}, Case{1.0, 8, 2, 8, 2}, Case{1.25, 8, 2, 8, 3},
                        Case{0.5, 6, 1, 4, 1}, Case{2.0, 3, 3, 9, 2}, Case{1.5, 7, 2, 8, 3}}) {
    SCOPED_TRACE(::testing::Message() << "factor " << c.factor << " N " << c.N << " K " << c.K << " E " << c.E);
    ASSERT_EQ(c.capacity, static_cast<int64_t>(std::ceil(c.factor * c.N * c.K / c.E)));
    // Slot k of every token goes to expert k (distinct experts per token).
    std::vector<int64_t> ids;
    for (int64_t t = 0; t < c.N; ++t) {
      for (int64_t k = 0; k < c.K; ++k) ids.push_back(k);
    }
    DispatchPlan plan = plan_dispatch(indices(ids, c.N, c.K), Tensor::full({c.N, c.K}, 0.1), c.E, c.factor,
                                      DropPolicy::kPosition, true);
    for (int64_t e = 0; e < c.E; ++e) EXPECT_EQ(plan.tokens_per_expert[e], c.capacity) << "expert " << e;
    const int64_t kept_per_used_expert = std::min(c.N, c.capacity);
    EXPECT_EQ(plan.dropped, c.K * (c.N - kept_per_used_expert));
    EXPECT_EQ(plan.padded, c.E * c.capacity - c.K * kept_per_used_expert);
    EXPECT_EQ(plan.token_index.numel(), c.E * c.capacity);
  }
}

// Six tokens, all to expert 0 (K = 1, E = 2, factor 1: capacity 3).
TEST(DispatchPlan, DropPolicyProbsKeepsHighestWeightsEarlierTokenOnTies) {
  Tensor topk = indices({0, 0, 0, 0, 0, 0}, 6, 1);
  Tensor weights = Tensor::from_vector(std::vector<double>{0.1, 0.5, 0.3, 0.5, 0.5, 0.5}, {6, 1});
  DispatchPlan plan = plan_dispatch(topk, weights, 2, 1.0, DropPolicy::kProbs, false);
  // Four tokens tie at 0.5; the three earliest of them are kept, in token order.
  EXPECT_EQ(plan.token_index.to_vector<int64_t>(), (std::vector<int64_t>{1, 3, 4}));
  EXPECT_EQ(plan.tokens_per_expert, (std::vector<int64_t>{3, 0}));
  EXPECT_EQ(plan.dropped, 3);
}

TEST(DispatchPlan, DropPolicyPositionKeepsEarliestTokens) {
  Tensor topk = indices({0, 0, 0, 0, 0, 0}, 6, 1);
  Tensor weights = Tensor::from_vector(std::vector<double>{0.1, 0.5, 0.3, 0.5, 0.5, 0.5}, {6, 1});
  DispatchPlan plan = plan_dispatch(topk, weights, 2, 1.0, DropPolicy::kPosition, false);
  EXPECT_EQ(plan.token_index.to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(plan.dropped, 3);
}

// K = 2: the policy decides per expert, over that expert's slots only.
TEST(DispatchPlan, DropPolicyProbsPerExpertWithTopTwo) {
  // Tokens 0..3 -> experts (0, 1), (0, 1), (1, 0), (0, 2); E = 4, factor 1: capacity 2.
  Tensor topk = indices({0, 1, 0, 1, 1, 0, 0, 2}, 4, 2);
  Tensor weights = Tensor::from_vector(std::vector<double>{0.6, 0.4, 0.3, 0.7, 0.8, 0.2, 0.9, 0.1}, {4, 2});
  DispatchPlan plan = plan_dispatch(topk, weights, 4, 1.0, DropPolicy::kProbs, false);
  // Expert 0 slots: t0 0.6, t1 0.3, t2 0.2, t3 0.9 -> keep t0, t3. Expert 1: t0 0.4, t1 0.7,
  // t2 0.8 -> keep t1, t2. Expert 2: t3.
  EXPECT_EQ(plan.token_index.to_vector<int64_t>(), (std::vector<int64_t>{0, 3, 1, 2, 3}));
  EXPECT_EQ(plan.slot_index.to_vector<int64_t>(), (std::vector<int64_t>{0, 6, 3, 4, 7}));
  EXPECT_EQ(plan.dropped, 3);
  DispatchPlan by_position = plan_dispatch(topk, weights, 4, 1.0, DropPolicy::kPosition, false);
  EXPECT_EQ(by_position.token_index.to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 0, 1, 3}));
}

TEST(DispatchPlan, PadToCapacityAddsZeroRowsAtEachExpertsEnd) {
  // E = 3, K = 1, N = 4, factor 1: capacity ceil(4/3) = 2. Expert 0 gets 3 slots (one
  // dropped), expert 1 one (one pad), expert 2 none (two pads).
  Tensor topk = indices({0, 1, 0, 0}, 4, 1);
  DispatchPlan plan = plan_dispatch(topk, Tensor::full({4, 1}, 1.0), 3, 1.0, DropPolicy::kPosition, true);
  EXPECT_EQ(plan.tokens_per_expert, (std::vector<int64_t>{2, 2, 2}));
  EXPECT_EQ(plan.token_index.to_vector<int64_t>(), (std::vector<int64_t>{0, 2, 1, -1, -1, -1}));
  EXPECT_EQ(plan.slot_index.to_vector<int64_t>(), (std::vector<int64_t>{0, 2, 1, -1, -1, -1}));
  EXPECT_EQ(plan.dropped, 1);
  EXPECT_EQ(plan.padded, 3);

  Tensor x = Tensor::from_vector(std::vector<double>{1, 2, 3, 4, 5, 6, 7, 8}, {4, 2});
  Tensor permuted = permute_tokens(x, plan);
  EXPECT_EQ(permuted.to_vector<double>(), (std::vector<double>{1, 2, 5, 6, 3, 4, 0, 0, 0, 0, 0, 0}));
  // Padding rows add nothing even when the experts write into them; token 3 was dropped.
  Tensor y = permuted + 1.0;
  Tensor out = unpermute_tokens(y, plan, Tensor::full({4, 1}, 1.0), 4);
  EXPECT_EQ(out.to_vector<double>(), (std::vector<double>{2, 3, 4, 5, 6, 7, 0, 0}));
}

// Identity experts and weights summing to 1 per token give x back (dropless).
TEST(DispatchLocal, RoundTripWithIdentityExperts) {
  const int64_t N = 9, K = 3, E = 5, C = 4;
  std::vector<int64_t> ids;
  for (int64_t t = 0; t < N; ++t) {
    for (int64_t k = 0; k < K; ++k) ids.push_back((t * 2 + k * 3) % E);
  }
  Tensor topk = indices(ids, N, K);
  Tensor weights = softmax(randn({N, K}), -1);
  Tensor x = randn({N, C});
  DispatchPlan plan = plan_dispatch(topk, weights, E, 0.0, DropPolicy::kProbs, false);
  EXPECT_EQ(plan.token_index.numel(), N * K);
  Tensor out = unpermute_tokens(permute_tokens(x, plan), plan, weights, N);
  EXPECT_LT(max_relative_error(out, x), 1e-6);
}

// permute -> y * y (a stand-in expert) -> unpermute, against a per-token loop over the kept
// slots, with finite-difference gradients wrt x and the weights.
OpCase dispatch_case(std::string name, std::vector<int64_t> ids, int64_t N, int64_t K, int64_t E, double factor,
                     bool pad, int64_t C) {
  auto op = [=](const std::vector<Tensor>& in) {
    DispatchPlan plan = plan_dispatch(indices(ids, N, K), in[1], E, factor, DropPolicy::kPosition, pad);
    Tensor y = permute_tokens(in[0], plan);
    return unpermute_tokens(y * y, plan, in[1], N);
  };
  auto reference = [=](const std::vector<HostArray>& in) {
    // kPosition by hand: an expert keeps its first `capacity` slots in token order.
    const int64_t capacity = factor > 0 ? static_cast<int64_t>(std::ceil(factor * N * K / E)) : N * K;
    std::vector<int64_t> used(E, 0);
    HostArray out{{N, C}, std::vector<double>(N * C, 0.0)};
    for (int64_t t = 0; t < N; ++t) {
      for (int64_t k = 0; k < K; ++k) {
        if (used[ids[t * K + k]]++ >= capacity) continue;
        for (int64_t c = 0; c < C; ++c) {
          const double v = in[0].values[t * C + c];
          out.values[t * C + c] += in[1].values[t * K + k] * v * v;
        }
      }
    }
    return out;
  };
  return {.name = std::move(name),
          .inputs = {{.shape = {N, C}}, {.shape = {N, K}, .low = 0.0, .high = 1.0}},
          .op = op,
          .reference = reference};
}

std::vector<OpCase> dispatch_cases() {
  return {
      dispatch_case("Dropless", {1, 0, 2, 1, 0, 2, 1, 2, 0, 1}, 5, 2, 3, 0.0, false, 3),
      dispatch_case("CapacityWithDrops", {0, 1, 0, 1, 0, 2, 0, 1, 0, 1}, 5, 2, 3, 1.0, false, 3),
      dispatch_case("CapacityPadded", {0, 1, 0, 1, 0, 1, 0, 1}, 4, 2, 4, 1.0, true, 2),
  };
}

INSTANTIATE_TEST_SUITE_P(DispatchLocal, OpCaseTest, ::testing::ValuesIn(dispatch_cases()), OpCaseName);

}  // namespace
}  // namespace sy::testing
