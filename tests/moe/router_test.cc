// Router: harness cases (naive reference, layouts, f64 finite differences through the router
// weights), hand-computed selections and weights, group limits, the expert bias and its update.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/ops/ops.h"
#include "moe/router.h"
#include "tests/support/op_harness.h"

namespace sy::testing {
namespace {

double sigmoid_of(double x) { return 1 / (1 + std::exp(-x)); }

// Naive routing of one row of logits, written from the conventions in router.h.
struct RowRouting {
  std::vector<int64_t> indices;
  std::vector<double> weights;
  std::vector<double> scores;
};

RowRouting reference_row(const std::vector<double>& logits, const MoeConfig& config, const std::vector<double>& bias) {
  const int64_t E = config.num_experts, K = config.top_k;
  const bool sigmoid_scores = config.score_function == ScoreFunction::kSigmoid;
  std::vector<double> p(E);
  if (sigmoid_scores) {
    for (int64_t e = 0; e < E; ++e) p[e] = sigmoid_of(logits[e]);
  } else {
    double top = *std::max_element(logits.begin(), logits.end()), total = 0;
    for (int64_t e = 0; e < E; ++e) total += p[e] = std::exp(logits[e] - top);
    for (double& v : p) v /= total;
  }
  const bool softmax_first = sigmoid_scores || config.pre_softmax;
  std::vector<double> selection(E);
  for (int64_t e = 0; e < E; ++e) selection[e] = (softmax_first ? p[e] : logits[e]) + (bias.empty() ? 0 : bias[e]);
  // Descending by value, lower index first on ties.
  auto ranked = [](const std::vector<double>& values, const std::vector<int64_t>& candidates) {
    std::vector<int64_t> order = candidates;
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return values[a] > values[b]; });
    return order;
  };
  std::vector<int64_t> eligible(E);
  std::iota(eligible.begin(), eligible.end(), 0);
  if (config.num_groups > 1) {
    const int64_t per_group = E / config.num_groups;
    std::vector<double> group_score(config.num_groups);
    for (int64_t g = 0; g < config.num_groups; ++g) {
      std::vector<double> members(selection.begin() + g * per_group, selection.begin() + (g + 1) * per_group);
      std::sort(members.rbegin(), members.rend());
      group_score[g] = members[0] + (per_group > 1 ? members[1] : 0);
    }
    std::vector<int64_t> groups(config.num_groups);
    std::iota(groups.begin(), groups.end(), 0);
    groups = ranked(group_score, groups);
    eligible.clear();
    for (int64_t g = 0; g < config.group_topk; ++g) {
      for (int64_t e = 0; e < per_group; ++e) eligible.push_back(groups[g] * per_group + e);
    }
    std::sort(eligible.begin(), eligible.end());
  }
  RowRouting row;
  std::vector<int64_t> order = ranked(selection, eligible);
  row.indices.assign(order.begin(), order.begin() + K);
  if (softmax_first) {
    double total = 0;
    for (int64_t k : row.indices) total += p[k];
    for (int64_t k : row.indices) {
      row.weights.push_back(sigmoid_scores || config.renormalize ? p[k] / total : p[k]);
    }
  } else {
    double total = 0;
    for (int64_t k : row.indices) total += std::exp(logits[k]);
    for (int64_t k : row.indices) row.weights.push_back(std::exp(logits[k]) / total);
  }
  for (double& w : row.weights) w *= config.routing_scale;
  double total = std::accumulate(p.begin(), p.end(), 0.0);
  for (double v : p) row.scores.push_back(sigmoid_scores ? v / total : v);
  return row;
}

// logits = x (N, C) @ w (E, C)^T, then the reference per row; `scores` picks which output.
HostArray reference_route(const std::vector<HostArray>& in, const MoeConfig& config, bool scores) {
  const HostArray& x = in[0];
  const HostArray& w = in[1];
  const int64_t N = x.shape[0], C = x.shape[1], E = w.shape[0];
  std::vector<double> bias = in.size() > 2 ? in[2].values : std::vector<double>();
  HostArray out{{N, scores ? E : config.top_k}, {}};
  for (int64_t n = 0; n < N; ++n) {
    std::vector<double> logits(E, 0.0);
    for (int64_t e = 0; e < E; ++e) {
      for (int64_t c = 0; c < C; ++c) logits[e] += x.values[n * C + c] * w.values[e * C + c];
    }
    RowRouting row = reference_row(logits, config, bias);
    const std::vector<double>& values = scores ? row.scores : row.weights;
    out.values.insert(out.values.end(), values.begin(), values.end());
  }
  return out;
}

OpCase routing_case(std::string name, MoeConfig config, bool scores = false, std::vector<double> bias = {}) {
  const int64_t N = 7, C = 5, E = config.num_experts;
  OpCase op_case{.name = std::move(name),
                 .inputs = {{.shape = {N, C}}, {.shape = {E, C}, .low = -1.5, .high = 1.5}},
                 .op = [config, scores](const std::vector<Tensor>& in) {
                   RoutingOutput routing = route(linear(in[0], in[1]), config, in.size() > 2 ? in[2] : Tensor());
                   return scores ? routing.scores : routing.topk_weights;
                 },
                 .reference = [config, scores](const std::vector<HostArray>& in) {
                   return reference_route(in, config, scores);
                 }};
  if (!bias.empty()) {
    op_case.inputs.push_back({.shape = {E}, .differentiable = false, .make = [bias, E] {
                                return Tensor::from_vector(bias, {E}, DType::kF64);
                              }});
  }
  return op_case;
}

MoeConfig moe(int64_t E, int64_t K, ScoreFunction score_function, bool pre_softmax, bool renormalize) {
  MoeConfig config;
  config.num_experts = E;
  config.top_k = K;
  config.score_function = score_function;
  config.pre_softmax = pre_softmax;
  config.renormalize = renormalize;
  return config;
}

std::vector<OpCase> router_cases() {
  MoeConfig mixtral = moe(6, 2, ScoreFunction::kSoftmax, false, false);
  MoeConfig pre_softmax = moe(6, 3, ScoreFunction::kSoftmax, true, false);
  pre_softmax.routing_scale = 2.5;
  MoeConfig pre_softmax_renormalized = moe(6, 2, ScoreFunction::kSoftmax, true, true);
  MoeConfig sigmoid_groups = moe(8, 3, ScoreFunction::kSigmoid, false, true);
  sigmoid_groups.num_groups = 4;
  sigmoid_groups.group_topk = 2;
  sigmoid_groups.expert_bias = true;
  sigmoid_groups.routing_scale = 2.5;
  MoeConfig softmax_groups_bias = moe(8, 2, ScoreFunction::kSoftmax, false, false);
  softmax_groups_bias.num_groups = 2;
  softmax_groups_bias.expert_bias = true;
  const std::vector<double> bias = {0.3, -0.2, 0.0, 0.5, -0.4, 0.1, 0.2, -0.1};
  return {
      routing_case("SoftmaxTop2Mixtral", mixtral),
      routing_case("PreSoftmaxTop3Scaled", pre_softmax),
      routing_case("PreSoftmaxTop2Renormalized", pre_softmax_renormalized),
      routing_case("SigmoidGroupLimitedBiasScaled", sigmoid_groups, false, bias),
      routing_case("SoftmaxGroupLimitedBias", softmax_groups_bias, false, bias),
      routing_case("SoftmaxScores", mixtral, true),
      routing_case("SigmoidNormalizedScores", sigmoid_groups, true, bias),
  };
}

INSTANTIATE_TEST_SUITE_P(Router, OpCaseTest, ::testing::ValuesIn(router_cases()), OpCaseName);

// 4 tokens x 4 experts; row maxima are unique so every top-2 is unambiguous.
const std::vector<double> kLogits = {3, 1, 2, 0,     // top-2 {0, 2}
                                     0, 0.5, 1, 2,   // {3, 2}
                                     1, 4, 0, 2,     // {1, 3}
                                     -1, 0, 3, 2.5}; // {2, 3}
const std::vector<std::vector<int64_t>> kTop2 = {{0, 2}, {3, 2}, {1, 3}, {2, 3}};

Tensor logits_4x4() { return Tensor::from_vector(kLogits, {4, 4}, DType::kF64); }

std::vector<std::vector<int64_t>> rows_of(const Tensor& indices) {
  std::vector<int64_t> flat = indices.to_vector<int64_t>();
  std::vector<std::vector<int64_t>> rows;
  for (int64_t n = 0; n < indices.size(0); ++n) {
    rows.emplace_back(flat.begin() + n * indices.size(1), flat.begin() + (n + 1) * indices.size(1));
  }
  return rows;
}

void expect_weights(const Tensor& weights, const std::vector<double>& expected, double tolerance = 1e-12) {
  std::vector<double> got = weights.to_vector<double>();
  ASSERT_EQ(got.size(), expected.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], expected[i], tolerance) << "weight " << i;
}

TEST(RouterExample, MixtralSoftmaxOverChosenLogits) {
  RoutingOutput out = route(logits_4x4(), moe(4, 2, ScoreFunction::kSoftmax, false, false));
  EXPECT_EQ(rows_of(out.topk_indices), kTop2);
  // Two chosen logits a > b: weights sigmoid(a - b), sigmoid(b - a).
  expect_weights(out.topk_weights, {sigmoid_of(1), sigmoid_of(-1), sigmoid_of(1), sigmoid_of(-1), sigmoid_of(2),
                                    sigmoid_of(-2), sigmoid_of(0.5), sigmoid_of(-0.5)});
  // The aux-loss scores are the full softmax.
  expect_weights(out.scores.select(0, 0), {std::exp(3) / (std::exp(3) + std::exp(1) + std::exp(2) + 1),
                                           std::exp(1) / (std::exp(3) + std::exp(1) + std::exp(2) + 1),
                                           std::exp(2) / (std::exp(3) + std::exp(1) + std::exp(2) + 1),
                                           1 / (std::exp(3) + std::exp(1) + std::exp(2) + 1)});
}

TEST(RouterExample, PreSoftmaxWeightsAreFullSoftmaxProbabilities) {
  RoutingOutput out = route(logits_4x4(), moe(4, 2, ScoreFunction::kSoftmax, true, false));
  EXPECT_EQ(rows_of(out.topk_indices), kTop2);
  std::vector<double> expected;
  for (int64_t n = 0; n < 4; ++n) {
    double total = 0;
    for (int64_t e = 0; e < 4; ++e) total += std::exp(kLogits[n * 4 + e]);
    for (int64_t e : kTop2[n]) expected.push_back(std::exp(kLogits[n * 4 + e]) / total);
  }
  expect_weights(out.topk_weights, expected);
}

TEST(RouterExample, PreSoftmaxRenormalizedEqualsMixtralTimesScale) {
  MoeConfig config = moe(4, 2, ScoreFunction::kSoftmax, true, true);
  config.routing_scale = 3.0;
  RoutingOutput out = route(logits_4x4(), config);
  EXPECT_EQ(rows_of(out.topk_indices), kTop2);
  expect_weights(out.topk_weights, {3 * sigmoid_of(1), 3 * sigmoid_of(-1), 3 * sigmoid_of(1), 3 * sigmoid_of(-1),
                                    3 * sigmoid_of(2), 3 * sigmoid_of(-2), 3 * sigmoid_of(0.5), 3 * sigmoid_of(-0.5)});
}

TEST(RouterExample, SigmoidWeightsRenormalizedScoresSumToOne) {
  RoutingOutput out = route(logits_4x4(), moe(4, 2, ScoreFunction::kSigmoid, false, true));
  EXPECT_EQ(rows_of(out.topk_indices), kTop2);
  std::vector<double> expected;
  for (int64_t n = 0; n < 4; ++n) {
    double a = sigmoid_of(kLogits[n * 4 + kTop2[n][0]]), b = sigmoid_of(kLogits[n * 4 + kTop2[n][1]]);
    expected.push_back(a / (a + b));
    expected.push_back(b / (a + b));
  }
  expect_weights(out.topk_weights, expected);
  double row_total = 0;
  for (int64_t e = 0; e < 4; ++e) row_total += sigmoid_of(kLogits[e]);
  expect_weights(out.scores.select(0, 0).narrow(0, 1, 1), {sigmoid_of(1) / row_total});
  expect_weights(sum(out.scores, {1}), {1, 1, 1, 1});
}

TEST(RouterExample, BiasChangesSelectionButNotWeights) {
  for (bool pre_softmax : {false, true}) {
    SCOPED_TRACE(pre_softmax ? "pre_softmax" : "mixtral");
    MoeConfig config = moe(4, 2, ScoreFunction::kSoftmax, pre_softmax, false);
    config.expert_bias = true;
    // A large bias on expert 1 forces it into every top-2, ranked first.
    Tensor bias = Tensor::from_vector(std::vector<double>{0, 10, 0, 0}, {4}, DType::kF64);
    RoutingOutput out = route(logits_4x4(), config, bias);
    EXPECT_EQ(rows_of(out.topk_indices), (std::vector<std::vector<int64_t>>{{1, 0}, {1, 3}, {1, 3}, {1, 2}}));
    RoutingOutput unbiased = route(logits_4x4(), moe(4, 4, ScoreFunction::kSoftmax, pre_softmax, false));
    std::vector<double> expected;
    for (int64_t n = 0; n < 4; ++n) {
      std::vector<int64_t> chosen = rows_of(out.topk_indices)[n];
      double a = kLogits[n * 4 + chosen[0]], b = kLogits[n * 4 + chosen[1]];
      if (pre_softmax) {
        std::vector<double> p = out.scores.select(0, n).to_vector<double>();
        expected.push_back(p[chosen[0]]);
        expected.push_back(p[chosen[1]]);
      } else {
        expected.push_back(sigmoid_of(a - b));
        expected.push_back(sigmoid_of(b - a));
      }
    }
    expect_weights(out.topk_weights, expected);
    // The scores (for the aux losses) ignore the bias.
    EXPECT_LT(max_relative_error(out.scores, unbiased.scores), 1e-15);
  }
}

TEST(RouterExample, GroupLimitedPicksOnlyFromBestGroups) {
  // Groups {0,1} {2,3} {4,5}; the best single experts (0 and 2) sit in groups whose top-2
  // sums lose to group 2's pair of good experts.
  Tensor logits = Tensor::from_vector(std::vector<double>{5, -5, 4, -5, 3, 3}, {1, 6}, DType::kF64);
  MoeConfig config = moe(6, 2, ScoreFunction::kSigmoid, false, true);
  EXPECT_EQ(rows_of(route(logits, config).topk_indices), (std::vector<std::vector<int64_t>>{{0, 2}}));
  config.num_groups = 3;
  config.group_topk = 1;
  RoutingOutput one_group = route(logits, config);
  EXPECT_EQ(rows_of(one_group.topk_indices), (std::vector<std::vector<int64_t>>{{4, 5}}));
  expect_weights(one_group.topk_weights, {0.5, 0.5});
  // Two groups: group 2 (2 sigmoid(3)) and group 0 (sigmoid(5) + sigmoid(-5) = 1) beat
  // group 1 (sigmoid(4) + sigmoid(-5) < 1). Ties in value keep the lower index.
  config.group_topk = 2;
  EXPECT_EQ(rows_of(route(logits, config).topk_indices), (std::vector<std::vector<int64_t>>{{0, 4}}));
  // Groups of one expert score by their single member: plain top-k.
  config.num_groups = 6;
  config.group_topk = 3;
  EXPECT_EQ(rows_of(route(logits, config).topk_indices), (std::vector<std::vector<int64_t>>{{0, 2}}));
}

TEST(RouterExample, GroupLimitedRandomTokensStayInBestGroups) {
  MoeConfig config = moe(16, 4, ScoreFunction::kSoftmax, true, true);
  config.num_groups = 4;
  config.group_topk = 2;
  Tensor logits = randn({64, 16}, DType::kF64) * 2.0;
  RoutingOutput out = route(logits, config);
  std::vector<double> flat = logits.to_vector<double>();
  for (int64_t n = 0; n < 64; ++n) {
    RowRouting row = reference_row(std::vector<double>(flat.begin() + n * 16, flat.begin() + (n + 1) * 16), config, {});
    EXPECT_EQ(rows_of(out.topk_indices)[n], row.indices) << "token " << n;
    std::vector<int64_t> groups;
    for (int64_t e : row.indices) groups.push_back(e / 4);
    std::sort(groups.begin(), groups.end());
    groups.erase(std::unique(groups.begin(), groups.end()), groups.end());
    EXPECT_LE(groups.size(), 2u) << "token " << n;
  }
}

TEST(RouterModule, ParametersBufferAndInit) {
  MoeConfig config = moe(64, 2, ScoreFunction::kSoftmax, false, false);
  Generator generator(7);
  Router router(config, 48, 0.02, &generator);
  auto parameters = router.named_parameters();
  ASSERT_EQ(parameters.size(), 1u);
  EXPECT_EQ(parameters[0].first, "weight");
  EXPECT_EQ(router.weight().shape(), (Shape{64, 48}));
  EXPECT_EQ(router.weight().dtype(), DType::kF32);
  EXPECT_TRUE(router.named_buffers().empty());
  std::vector<double> w = router.weight().to_vector<double>();
  double mean_value = std::accumulate(w.begin(), w.end(), 0.0) / w.size(), square = 0;
  for (double v : w) square += (v - mean_value) * (v - mean_value);
  EXPECT_NEAR(std::sqrt(square / w.size()), 0.02, 0.002);
  EXPECT_NEAR(mean_value, 0.0, 0.002);

  config.expert_bias = true;
  Router biased(config, 48);
  auto buffers = biased.named_buffers();
  ASSERT_EQ(buffers.size(), 1u);
  EXPECT_EQ(buffers[0].first, "expert_bias");
  EXPECT_EQ(biased.state_dict().count("expert_bias"), 1u);
  EXPECT_EQ(biased.expert_bias().to_vector<double>(), std::vector<double>(64, 0.0));
}

TEST(RouterModule, LogitsInF32FromAnyInputDtype) {
  MoeConfig config = moe(4, 2, ScoreFunction::kSoftmax, false, false);
  Router router(config, 3);
  Tensor x = Tensor::from_vector(std::vector<double>{0.5, -1, 2, 1, 0.25, -0.5}, {2, 3}, DType::kBF16);
  RoutingOutput out = router.forward(x);
  EXPECT_EQ(out.logits.dtype(), DType::kF32);
  EXPECT_EQ(out.topk_weights.dtype(), DType::kF32);
  Tensor expected = matmul(x.to(DType::kF32), router.weight().t());
  EXPECT_LT(max_relative_error(out.logits, expected), 1e-7);
  // The gradient reaches the f32 weight.
  sum(out.topk_weights * Tensor::from_vector(std::vector<double>{1, -2, 0.5, 3}, {2, 2})).backward();
  ASSERT_TRUE(router.weight().grad().defined());
  EXPECT_GT(sum(abs(router.weight().grad())).item(), 0.0);
}

TEST(RouterModule, InputJitterOnlyInTraining) {
  MoeConfig config = moe(8, 2, ScoreFunction::kSoftmax, false, false);
  config.input_jitter = 0.1;
  Router router(config, 16);
  Tensor x = randn({32, 16});
  Tensor clean = matmul(x, router.weight().t());
  router.eval();
  EXPECT_LT(max_relative_error(router.forward(x).logits, clean), 1e-7);
  router.train();
  Tensor jittered = router.forward(x).logits;
  EXPECT_GT(max_relative_error(jittered, clean), 1e-4);
  // x * (1 + d) with |d| <= eps moves each logit by at most eps * sum_c |x_c w_c|.
  Tensor bound = matmul(abs(x), abs(router.weight()).t()) * 0.1 + 1e-6;
  EXPECT_EQ(sum(gt(abs(jittered - clean), bound).to(DType::kF32)).item(), 0.0);
}

TEST(RouterBias, UpdateMovesBySignTimesRate) {
  MoeConfig config = moe(4, 1, ScoreFunction::kSigmoid, false, true);
  config.expert_bias = true;
  config.bias_update_rate = 0.1;
  Router router(config, 8);
  // mean load 5: expert 0 is overloaded, the others under.
  router.update_expert_bias(Tensor::from_vector(std::vector<int64_t>{10, 2, 4, 4}, {4}, DType::kI64));
  expect_weights(router.expert_bias(), {-0.1, 0.1, 0.1, 0.1}, 1e-7);
  // Loads at the mean leave the bias alone; the step is the rate whatever the imbalance.
  router.update_expert_bias(Tensor::from_vector(std::vector<int64_t>{5, 5, 10, 0}, {4}, DType::kI64));
  expect_weights(router.expert_bias(), {-0.1, 0.1, 0.0, 0.2}, 1e-7);
  // Counts as floats work too (summed over ranks in f32).
  router.update_expert_bias(Tensor::from_vector(std::vector<double>{1, 1, 1, 1}, {4}));
  expect_weights(router.expert_bias(), {-0.1, 0.1, 0.0, 0.2}, 1e-7);
  EXPECT_FALSE(router.expert_bias().requires_grad());
}

TEST(RouterErrors, ShapesAreChecked) {
  MoeConfig config = moe(4, 2, ScoreFunction::kSoftmax, false, false);
  EXPECT_THROW(route(Tensor::zeros({3, 5}), config), Error);      // E mismatch
  EXPECT_THROW(route(Tensor::zeros({12}), config), Error);        // not 2-D
  MoeConfig biased = config;
  biased.expert_bias = true;
  EXPECT_THROW(route(Tensor::zeros({3, 4}), biased), Error);      // bias missing
  EXPECT_THROW(route(Tensor::zeros({3, 4}), biased, Tensor::zeros({5})), Error);
  MoeConfig grouped = config;
  grouped.num_groups = 3;                                         // does not divide 4
  EXPECT_THROW(route(Tensor::zeros({3, 4}), grouped), Error);
  grouped.num_groups = 4;
  grouped.group_topk = 1;                                         // one expert left for K = 2
  EXPECT_THROW(route(Tensor::zeros({3, 4}), grouped), Error);
  Router router(config, 6);
  EXPECT_THROW(router.forward(Tensor::zeros({3, 5})), Error);
  EXPECT_THROW(router.update_expert_bias(Tensor::zeros({4})), Error);  // built without a bias
  config.expert_bias = true;
  Router with_bias(config, 6);
  EXPECT_THROW(with_bias.update_expert_bias(Tensor::zeros({3})), Error);
}

}  // namespace
}  // namespace sy::testing
