// Upcycling: the upcycled MoE reproduces the dense model's logits where moe/upcycle.h says it
// does (coarse, granular with virtual-group routing, shared experts from the dense FFN), the
// expert layout is the dense FFN's slices, and shapes that cannot be upcycled are refused.
#include "moe/upcycle.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include <gtest/gtest.h>

#include "core/autograd/grad_mode.h"
#include "core/ops/ops.h"
#include "core/random.h"
#include "moe/model.h"
#include "tests/support/mpi_test_world.h"

namespace sy::testing {
namespace {

// V 64, C 32, L 2, H 4, Hkv 2, dense width 64.
ModelConfig dense_config() {
  ModelConfig c;
  c.vocab_size = 64;
  c.hidden_size = 32;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.ffn_size = 64;
  c.max_seq_len = 16;
  c.seed = 3;
  return c;
}

// A dense model with weights far from the init (std 0.2, norms around 1), so that every FFN
// slice and every attention weight matters in the logits.
std::unique_ptr<Transformer> random_dense(const ModelConfig& config, uint64_t seed = 11) {
  auto model = std::make_unique<Transformer>(config);
  Generator generator(seed);
  NoGradGuard no_grad;
  for (auto& [name, parameter] : model->named_parameters()) {
    normal_(parameter, 0.0, 0.2, &generator);
    if (parameter.dim() == 1) parameter.add_(Tensor::ones(parameter.shape()));
  }
  model->eval();
  return model;
}

ModelConfig moe_of(const ModelConfig& dense, int64_t E, int64_t K, int64_t F) {
  ModelConfig c = dense;
  c.seed = 99;
  c.moe.num_experts = E;
  c.moe.top_k = K;
  c.moe.expert_ffn_size = F;
  return c;
}

Tensor tokens_for(const ModelConfig& config, int64_t B = 3, int64_t T = 12) {
  Generator generator(7);
  Tensor uniform = Tensor::empty({B, T});
  uniform_(uniform, 0.0, 1.0, &generator);
  std::vector<int64_t> ids;
  for (double u : uniform.to_vector<double>()) ids.push_back(static_cast<int64_t>(u * config.vocab_size) % config.vocab_size);
  return Tensor::from_vector(ids, {B, T}, DType::kI64);
}

struct Comparison {
  double max_difference = 0;  // max |MoE logit - dense logit|
  double max_logit = 0;       // max |dense logit|
};

Comparison compare(Transformer& dense, Transformer& moe) {
  dense.eval();
  moe.eval();
  Tensor tokens = tokens_for(dense.config());
  NoGradGuard no_grad;
  const std::vector<double> a = dense.forward(tokens).logits.to_vector<double>();
  const std::vector<double> b = moe.forward(tokens).logits.to_vector<double>();
  Comparison result;
  for (size_t i = 0; i < a.size(); ++i) {
    result.max_difference = std::max(result.max_difference, std::abs(a[i] - b[i]));
    result.max_logit = std::max(result.max_logit, std::abs(a[i]));
  }
  return result;
}

// Upcycles a random dense model into `moe_config` and returns the logits' distance.
Comparison upcycle_and_compare(const ModelConfig& moe_config, const UpcycleOptions& options, UpcyclePlan* plan_out = nullptr,
                               const ModelConfig& dense = dense_config()) {
  auto dense_model = random_dense(dense);
  Transformer moe(moe_config);
  absl::StatusOr<UpcyclePlan> plan = upcycle(dense_model->state_dict(), dense, moe, options);
  EXPECT_TRUE(plan.ok()) << plan.status();
  if (!plan.ok()) return {1e30, 0};
  if (plan_out != nullptr) *plan_out = *plan;
  return compare(*dense_model, moe);
}

// f32 rounding through two layers of attention and FFN on logits of size ~10.
constexpr double kRounding = 2e-5;

void expect_exact(const ModelConfig& moe_config, const UpcycleOptions& options = {}) {
  UpcyclePlan plan;
  Comparison c = upcycle_and_compare(moe_config, options, &plan);
  EXPECT_TRUE(plan.exact) << plan.exactness;
  EXPECT_GT(c.max_logit, 1.0);  // the logits are not trivially small
  EXPECT_LE(c.max_difference, kRounding * c.max_logit) << "max |logit| " << c.max_logit << ": " << plan.exactness;
  std::printf("  G=%lld E=%lld K=%lld: max |MoE - dense logit| = %.3g (max |logit| %.3g); %s\n",
              static_cast<long long>(plan.granularity), static_cast<long long>(moe_config.moe.num_experts),
              static_cast<long long>(moe_config.moe.top_k), c.max_difference, c.max_logit, plan.exactness.c_str());
}

TEST(UpcycleCoarse, E8Top2MixtralSoftmaxEqualsDense) { expect_exact(moe_of(dense_config(), 8, 2, 64)); }

TEST(UpcycleCoarse, E4Top2PreSoftmaxRenormalizedEqualsDense) {
  ModelConfig c = moe_of(dense_config(), 4, 2, 64);
  c.moe.pre_softmax = true;
  c.moe.renormalize = true;
  expect_exact(c);
}

TEST(UpcycleCoarse, SigmoidGroupLimitedWithRoutingScaleAndBiasEqualsDense) {
  ModelConfig c = moe_of(dense_config(), 8, 3, 64);
  c.moe.score_function = ScoreFunction::kSigmoid;
  c.moe.renormalize = true;
  c.moe.routing_scale = 2.5;
  c.moe.num_groups = 4;
  c.moe.group_topk = 2;
  c.moe.expert_bias = true;
  UpcycleOptions options;
  options.router = RouterInit::kRandom;
  expect_exact(c, options);
}

TEST(UpcycleCoarse, FirstLayerDenseCopiesItsFfn) {
  ModelConfig c = moe_of(dense_config(), 4, 1, 64);
  c.first_k_dense_layers = 1;
  expect_exact(c);
}

TEST(UpcycleGranular, G4E8Top4VirtualGroupEqualsDense) { expect_exact(moe_of(dense_config(), 8, 4, 16)); }

TEST(UpcycleGranular, G2E8Top4PreSoftmaxRenormalizedGroupsOfOneCopyEqualsDense) {
  ModelConfig c = moe_of(dense_config(), 8, 4, 32);  // 4 copies of 2 slices
  c.moe.pre_softmax = true;
  c.moe.renormalize = true;
  c.moe.num_groups = 4;  // a routing group per copy
  c.moe.group_topk = 2;
  expect_exact(c);
}

TEST(UpcycleGranular, G4E16Top8SigmoidCopiesSpanningTwoGroupsEqualsDense) {
  ModelConfig c = moe_of(dense_config(), 16, 8, 16);  // 4 copies of 4 slices
  c.moe.score_function = ScoreFunction::kSigmoid;
  c.moe.renormalize = true;
  c.moe.num_groups = 8;  // groups of 2 experts: a copy spans 2 groups
  c.moe.group_topk = 4;
  expect_exact(c);
}

TEST(UpcycleGranular, G8E64Top8EqualsDense) { expect_exact(moe_of(dense_config(), 64, 8, 8)); }

TEST(UpcycleShared, GatedSharedExpertFromFirstUnitsAndG3RoutedEqualsDense) {
  ModelConfig c = moe_of(dense_config(), 6, 3, 16);  // 48 routed units in 3 slices, 2 copies
  c.moe.num_shared_experts = 1;
  c.moe.shared_expert_ffn_size = 16;
  c.moe.shared_expert_gate = true;
  c.moe.pre_softmax = true;
  c.moe.renormalize = true;
  UpcyclePlan plan;
  expect_exact(c);
  Comparison unused = upcycle_and_compare(c, {}, &plan);
  (void)unused;
  EXPECT_EQ(plan.shared_width, 16);
  EXPECT_EQ(plan.granularity, 3);
  EXPECT_EQ(plan.shared_scale, 2.0);
}

TEST(UpcycleShared, TwoSharedExpertsAndCoarseRoutedCopiesEqualsDense) {
  ModelConfig c = moe_of(dense_config(), 4, 2, 32);  // shared: units [0, 32); routed: copies of [32, 64)
  c.moe.num_shared_experts = 2;
  c.moe.shared_expert_ffn_size = 16;
  c.first_k_dense_layers = 1;
  expect_exact(c);
}

TEST(UpcycleLayout, ExpertsAreScaledDenseSlicesAndVirtualGroupsShareRouterRows) {
  const ModelConfig dense = dense_config();
  auto dense_model = random_dense(dense);
  ModelConfig c = moe_of(dense, 8, 4, 16);  // G 4, 2 copies
  Transformer moe(c);
  absl::StatusOr<UpcyclePlan> plan = upcycle(dense_model->state_dict(), dense, moe, {});
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->granularity, 4);
  EXPECT_EQ(plan->copies, 2);
  EXPECT_DOUBLE_EQ(plan->expert_scale, 4.0);  // G / (weights summing to 1)
  StateDict d = dense_model->state_dict(), m = moe.state_dict();
  const Tensor gate = d.at("layers.1.mlp.gate_proj.weight"), up = d.at("layers.1.mlp.up_proj.weight");
  const Tensor down = d.at("layers.1.mlp.down_proj.weight");
  const Tensor w1 = m.at("layers.1.mlp.experts.w1"), w2 = m.at("layers.1.mlp.experts.w2");
  const Tensor router = m.at("layers.1.mlp.gate.weight");
  for (int64_t e : {0, 3, 6}) {
    const int64_t units = (e % 4) * 16;
    // w1[e][c, f] = gate[units + f, c]; w1[e][c, F + f] = up[units + f, c]; w2[e][f, c] = 4 * down[c, units + f].
    for (auto [c_index, f] : {std::pair<int64_t, int64_t>{0, 0}, {5, 15}, {31, 7}}) {
      EXPECT_EQ(w1.select(0, e).select(0, c_index).select(0, f).item(), gate.select(0, units + f).select(0, c_index).item());
      EXPECT_EQ(w1.select(0, e).select(0, c_index).select(0, 16 + f).item(), up.select(0, units + f).select(0, c_index).item());
      EXPECT_FLOAT_EQ(w2.select(0, e).select(0, f).select(0, c_index).item(),
                      4.0 * down.select(0, c_index).select(0, units + f).item());
    }
    // Expert e's router row is its copy's: experts 0-3 share one, 4-7 another.
    EXPECT_EQ(router.select(0, e).to_vector<float>(), router.select(0, (e / 4) * 4).to_vector<float>());
  }
  EXPECT_NE(router.select(0, 0).to_vector<float>(), router.select(0, 4).to_vector<float>());
  // Attention, norms, embedding and head are the dense ones.
  for (const char* name : {"embed_tokens.weight", "layers.0.self_attn.k_proj.weight", "layers.1.input_layernorm.weight",
                           "norm.weight", "lm_head.weight"}) {
    EXPECT_EQ(m.at(name).to_vector<float>(), d.at(name).to_vector<float>()) << name;
  }
}

TEST(UpcycleLayout, TiedDenseEmbeddingBecomesTheUntiedHead) {
  ModelConfig dense = dense_config();
  dense.tie_embeddings = true;
  auto dense_model = random_dense(dense);
  ModelConfig c = moe_of(dense, 4, 2, 64);
  c.tie_embeddings = false;
  Transformer moe(c);
  ASSERT_TRUE(upcycle(dense_model->state_dict(), dense, moe, {}).ok());
  Comparison result = compare(*dense_model, moe);
  EXPECT_LE(result.max_difference, kRounding * result.max_logit);
}

TEST(UpcycleNotExact, GranularWithRandomRouterSaysSoAndDiffers) {
  UpcycleOptions options;
  options.router = RouterInit::kRandom;
  UpcyclePlan plan;
  Comparison c = upcycle_and_compare(moe_of(dense_config(), 8, 4, 16), options, &plan);
  EXPECT_FALSE(plan.exact);
  EXPECT_NE(plan.exactness.find("random router"), std::string::npos) << plan.exactness;
  EXPECT_GT(c.max_difference, 1e-3 * c.max_logit);
}

TEST(UpcycleNotExact, TopKNotAMultipleOfGranularityAndUnnormalizedPreSoftmaxSaySo) {
  absl::StatusOr<UpcyclePlan> plan = plan_upcycle(dense_config(), moe_of(dense_config(), 8, 2, 16), {});
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_FALSE(plan->exact);
  EXPECT_NE(plan->exactness.find("top_k 2 is not a multiple of the granularity 4"), std::string::npos) << plan->exactness;

  ModelConfig c = moe_of(dense_config(), 8, 2, 64);
  c.moe.pre_softmax = true;  // no renormalize: the two chosen probabilities sum to < 1
  plan = plan_upcycle(dense_config(), c, {});
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_FALSE(plan->exact);
  EXPECT_DOUBLE_EQ(plan->expert_scale, 4.0);  // E / K for a uniform router
  EXPECT_NE(plan->exactness.find("pre_softmax without renormalize"), std::string::npos) << plan->exactness;
}

TEST(UpcycleNoise, SeededNoiseBreaksCopySymmetrySlightly) {
  ModelConfig c = moe_of(dense_config(), 4, 2, 64);
  UpcycleOptions options;
  options.noise = 0.01;
  options.seed = 5;
  auto dense_model = random_dense(dense_config());
  Transformer a(c), b(c), other(c);
  absl::StatusOr<UpcyclePlan> plan = upcycle(dense_model->state_dict(), dense_config(), a, options);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_NE(plan->exactness.find("before the noise"), std::string::npos) << plan->exactness;
  ASSERT_TRUE(upcycle(dense_model->state_dict(), dense_config(), b, options).ok());
  options.seed = 6;
  ASSERT_TRUE(upcycle(dense_model->state_dict(), dense_config(), other, options).ok());
  const Tensor w1 = a.state_dict().at("layers.0.mlp.experts.w1");
  EXPECT_EQ(w1.to_vector<float>(), b.state_dict().at("layers.0.mlp.experts.w1").to_vector<float>());  // seeded
  EXPECT_NE(w1.to_vector<float>(), other.state_dict().at("layers.0.mlp.experts.w1").to_vector<float>());
  EXPECT_NE(w1.select(0, 0).to_vector<float>(), w1.select(0, 1).to_vector<float>());  // copies differ
  Comparison result = compare(*dense_model, a);
  EXPECT_GT(result.max_difference, kRounding * result.max_logit);
  EXPECT_LT(result.max_difference, 0.05 * result.max_logit);
}

// The refusal for `moe`, its message containing every string of `expected`.
void expect_refused(const ModelConfig& dense, const ModelConfig& moe, const std::vector<std::string>& expected,
                    const UpcycleOptions& options = {}) {
  absl::StatusOr<UpcyclePlan> plan = plan_upcycle(dense, moe, options);
  ASSERT_FALSE(plan.ok());
  for (const std::string& part : expected) {
    EXPECT_NE(plan.status().message().find(part), std::string::npos) << plan.status().message();
  }
}

TEST(UpcycleRefuses, ExpertWidthNotDividingTheDenseWidth) {
  expect_refused(dense_config(), moe_of(dense_config(), 8, 2, 24), {"expert_ffn_size 24", "64"});
}

TEST(UpcycleRefuses, ExpertsNotAMultipleOfTheGranularity) {
  expect_refused(dense_config(), moe_of(dense_config(), 6, 2, 16), {"num_experts 6", "granularity 4"});
}

TEST(UpcycleRefuses, MismatchedWidthLayersHeadsVocabulary) {
  const ModelConfig dense = dense_config();
  ModelConfig c = moe_of(dense, 4, 2, 64);
  c.hidden_size = 48;
  c.num_heads = 4;
  expect_refused(dense, c, {"hidden_size", "32", "48"});
  c = moe_of(dense, 4, 2, 64);
  c.num_layers = 3;
  expect_refused(dense, c, {"num_layers", "2", "3"});
  c = moe_of(dense, 4, 2, 64);
  c.num_heads = 8;
  c.num_kv_heads = 2;
  expect_refused(dense, c, {"num_heads", "4", "8"});
  c = moe_of(dense, 4, 2, 64);
  c.num_kv_heads = 4;
  expect_refused(dense, c, {"num_kv_heads", "2", "4"});
  c = moe_of(dense, 4, 2, 64);
  c.vocab_size = 128;
  expect_refused(dense, c, {"vocab_size", "64", "128"});
}

TEST(UpcycleRefuses, DenseLayerWidthAndSourceMoeLayers) {
  const ModelConfig dense = dense_config();
  ModelConfig c = moe_of(dense, 4, 2, 64);
  c.first_k_dense_layers = 1;
  c.ffn_size = 128;
  expect_refused(dense, c, {"ffn_size", "64", "128"});
  ModelConfig source = moe_of(dense, 4, 2, 64);
  expect_refused(source, moe_of(dense, 4, 2, 64), {"layer 0 of the dense model is an MoE layer"});
}

TEST(UpcycleRefuses, GranularityOtherThanTheWidthsGive) {
  UpcycleOptions options;
  options.granularity = 2;
  expect_refused(dense_config(), moe_of(dense_config(), 8, 4, 16), {"asked for 2", "give 4"}, options);
}

TEST(UpcycleRefuses, SharedExpertsAsWideAsTheDenseFfn) {
  ModelConfig c = moe_of(dense_config(), 4, 2, 16);
  c.moe.num_shared_experts = 2;
  c.moe.shared_expert_ffn_size = 32;
  expect_refused(dense_config(), c, {"64", "no hidden units"});
}

TEST(UpcycleRefuses, MissingOrMisshapenDenseTensorChangesNothing) {
  const ModelConfig dense = dense_config();
  auto dense_model = random_dense(dense);
  Transformer moe(moe_of(dense, 4, 2, 64));
  const std::vector<float> before = moe.state_dict().at("embed_tokens.weight").to_vector<float>();
  StateDict state = dense_model->state_dict();
  state.erase("layers.1.mlp.up_proj.weight");
  absl::StatusOr<UpcyclePlan> plan = upcycle(state, dense, moe, {});
  ASSERT_FALSE(plan.ok());
  EXPECT_NE(plan.status().message().find("layers.1.mlp.up_proj.weight"), std::string::npos) << plan.status();
  state = dense_model->state_dict();
  state["norm.weight"] = Tensor::ones({16});
  plan = upcycle(state, dense, moe, {});
  ASSERT_FALSE(plan.ok());
  EXPECT_NE(plan.status().message().find("norm.weight has shape (16)"), std::string::npos) << plan.status();
  EXPECT_EQ(moe.state_dict().at("embed_tokens.weight").to_vector<float>(), before);
}


// Under EP each rank fills only its experts: the same values as the one-rank model's block (noise
// included), and the sharded model's logits equal the dense model's.
TEST(MultiRankUpcycle, EachRankFillsItsExpertBlockAndTheShardedModelEqualsDense) {
  const std::shared_ptr<Communicator> world = test_world();
  if (world->size() < 2) GTEST_SKIP() << "needs mpirun with 2+ ranks";
  const int64_t ranks = world->size(), rank = world->rank();
  const ModelConfig dense = dense_config();
  auto dense_model = random_dense(dense);
  const ModelConfig c = moe_of(dense, 8, 4, 16);  // G 4: with 4 ranks a copy spans two of them
  ASSERT_EQ(c.moe.num_experts % ranks, 0);
  const int64_t local = c.moe.num_experts / ranks;
  UpcycleOptions noisy;
  noisy.noise = 0.01;
  noisy.seed = 3;
  Transformer one_rank(c), sharded(c, MoeParallel{.expert = world});
  ASSERT_TRUE(upcycle(dense_model->state_dict(), dense, one_rank, noisy).ok());
  ASSERT_TRUE(upcycle(dense_model->state_dict(), dense, sharded, noisy).ok());
  const StateDict whole = one_rank.state_dict(), block = sharded.state_dict();
  for (const char* name : {"layers.0.mlp.experts.w1", "layers.1.mlp.experts.w2"}) {
    ASSERT_EQ(block.at(name).size(0), local) << name;
    EXPECT_EQ(block.at(name).to_vector<float>(), whole.at(name).narrow(0, rank * local, local).to_vector<float>())
        << name << " on rank " << rank;
  }
  EXPECT_EQ(block.at("layers.1.mlp.gate.weight").to_vector<float>(),
            whole.at("layers.1.mlp.gate.weight").to_vector<float>());

  Transformer exact(c, MoeParallel{.expert = world});
  absl::StatusOr<UpcyclePlan> plan = upcycle(dense_model->state_dict(), dense, exact, {});
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_TRUE(plan->exact) << plan->exactness;
  Comparison result = compare(*dense_model, exact);
  EXPECT_LE(result.max_difference, kRounding * result.max_logit) << "rank " << rank;
}

}  // namespace
}  // namespace sy::testing
