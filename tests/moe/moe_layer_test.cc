// MoeLayer against a naive per-token loop (for each token: the sum over its kept top-k
// experts of weight * expert_ffn(x), plus the shared experts), for plain top-2 routing,
// fine-grained experts with gated shared experts, and capacity 1.0 with each drop policy;
// gradients reach every parameter; the balancing losses and counts in the stats.
#include <cmath>

#include "core/autograd/grad_mode.h"
#include "core/ops/ops.h"
#include "moe/aux_losses.h"
#include "moe/dispatch_local.h"
#include "moe/moe_layer.h"
#include "tests/support/op_harness.h"

namespace sy::testing {
namespace {

double silu_of(double v) { return v / (1 + std::exp(-v)); }

// x (C) through a SwiGLU with gate/up (F, C) and down (C, F) in PyTorch layout.
std::vector<double> swiglu_rows(const std::vector<double>& x, const HostArray& gate, const HostArray& up,
                                const HostArray& down) {
  const int64_t F = gate.shape[0], C = gate.shape[1];
  std::vector<double> out(C, 0.0);
  for (int64_t f = 0; f < F; ++f) {
    double g = 0, u = 0;
    for (int64_t c = 0; c < C; ++c) {
      g += gate.values[f * C + c] * x[c];
      u += up.values[f * C + c] * x[c];
    }
    const double h = silu_of(g) * u;
    for (int64_t c = 0; c < C; ++c) out[c] += down.values[c * F + f] * h;
  }
  return out;
}

// Expert e of w1 (E, C, 2F) and w2 (E, F, C), applied to one row.
std::vector<double> expert_row(const std::vector<double>& x, const HostArray& w1, const HostArray& w2, int64_t e) {
  const int64_t C = w1.shape[1], F = w2.shape[1];
  std::vector<double> out(C, 0.0);
  for (int64_t f = 0; f < F; ++f) {
    double g = 0, u = 0;
    for (int64_t c = 0; c < C; ++c) {
      g += x[c] * w1.values[(e * C + c) * 2 * F + f];
      u += x[c] * w1.values[(e * C + c) * 2 * F + F + f];
    }
    const double h = silu_of(g) * u;
    for (int64_t c = 0; c < C; ++c) out[c] += h * w2.values[(e * F + f) * C + c];
  }
  return out;
}

// Whether routed slot (t, k) survives the capacity: it is kept when fewer than `capacity`
// slots of its expert rank before it (kPosition: earlier slots; kProbs: higher weight, or
// equal weight and earlier).
bool slot_kept(const std::vector<int64_t>& ids, const std::vector<double>& weights, int64_t slot,
               int64_t capacity, DropPolicy policy) {
  int64_t ahead = 0;
  for (int64_t other = 0; other < static_cast<int64_t>(ids.size()); ++other) {
    if (other == slot || ids[other] != ids[slot]) continue;
    const bool before = policy == DropPolicy::kPosition
                            ? other < slot
                            : weights[other] > weights[slot] || (weights[other] == weights[slot] && other < slot);
    ahead += before ? 1 : 0;
  }
  return ahead < capacity;
}

// The layer's output computed token by token from its state dict and its router's choice.
Tensor naive_moe(MoeLayer& layer, const MoeConfig& config, const Tensor& x) {
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2), N = B * T, K = config.top_k, E = config.num_experts;
  NoGradGuard no_grad;
  RoutingOutput routing = layer.router().forward(x.reshape({N, C}));
  const std::vector<int64_t> ids = routing.topk_indices.to_vector<int64_t>();
  const std::vector<double> weights = routing.topk_weights.to_vector<double>();
  StateDict state = layer.state_dict();
  const HostArray w1 = HostArray::of(state.at("experts.w1")), w2 = HostArray::of(state.at("experts.w2"));
  const HostArray xs = HostArray::of(x.reshape({N, C}));
  const int64_t capacity =
      config.capacity_factor > 0 ? static_cast<int64_t>(std::ceil(config.capacity_factor * N * K / E)) : N * K;
  std::vector<double> out(N * C, 0.0);
  for (int64_t t = 0; t < N; ++t) {
    std::vector<double> row(xs.values.begin() + t * C, xs.values.begin() + (t + 1) * C);
    for (int64_t k = 0; k < K; ++k) {
      if (!slot_kept(ids, weights, t * K + k, capacity, config.drop_policy)) continue;
      std::vector<double> y = expert_row(row, w1, w2, ids[t * K + k]);
      for (int64_t c = 0; c < C; ++c) out[t * C + c] += weights[t * K + k] * y[c];
    }
    if (config.num_shared_experts > 0) {
      std::vector<double> shared =
          swiglu_rows(row, HostArray::of(state.at("shared_experts.gate_proj.weight")),
                      HostArray::of(state.at("shared_experts.up_proj.weight")),
                      HostArray::of(state.at("shared_experts.down_proj.weight")));
      double scale = 1.0;
      if (config.shared_expert_gate) {
        const HostArray gate = HostArray::of(state.at("shared_expert_gate.weight"));
        double s = 0;
        for (int64_t c = 0; c < C; ++c) s += gate.values[c] * row[c];
        scale = 1 / (1 + std::exp(-s));
      }
      for (int64_t c = 0; c < C; ++c) out[t * C + c] += scale * shared[c];
    }
  }
  return Tensor::from_vector(out, {B, T, C});
}

MoeConfig top2_config() {
  MoeConfig config;
  config.num_experts = 8;
  config.top_k = 2;
  config.expert_ffn_size = 12;
  return config;
}

MoeConfig fine_grained_config() {
  MoeConfig config;
  config.num_experts = 16;
  config.top_k = 4;
  config.expert_ffn_size = 6;
  config.num_shared_experts = 2;
  config.shared_expert_ffn_size = 6;
  config.shared_expert_gate = true;
  config.pre_softmax = true;
  config.renormalize = true;
  return config;
}

TEST(MoeLayer, E8Top2SoftmaxMatchesPerTokenLoop) {
  MoeConfig config = top2_config();
  MoeLayer layer(config, 16, 0.2, 0.1);
  Tensor x = randn({2, 5, 16});
  MoeLayerStats stats;
  Tensor out = layer.forward(x, &stats);
  EXPECT_EQ(out.shape(), x.shape());
  EXPECT_LT(max_relative_error(out, naive_moe(layer, config, x)), 1e-5);
  EXPECT_EQ(stats.dropped, 0);
  EXPECT_EQ(sum(stats.tokens_per_expert).item(), 2 * 5 * 2);
}

TEST(MoeLayer, E16Top4FineGrainedTwoGatedSharedExpertsMatchesPerTokenLoop) {
  MoeConfig config = fine_grained_config();
  MoeLayer layer(config, 12, 0.2, 0.1);
  Tensor x = randn({3, 4, 12});
  Tensor out = layer.forward(x, nullptr);
  EXPECT_LT(max_relative_error(out, naive_moe(layer, config, x)), 1e-5);
  // One fused shared FFN of width 2 * 6.
  EXPECT_EQ(layer.state_dict().at("shared_experts.gate_proj.weight").shape(), (Shape{12, 12}));
  EXPECT_EQ(layer.state_dict().at("shared_expert_gate.weight").shape(), (Shape{1, 12}));
}

// Every token prefers experts 0 and 1 (E = 4, K = 2, N = 10, capacity ceil(20 / 4) = 5):
// five tokens' slots are dropped at each of the two experts.
void check_capacity(DropPolicy policy) {
  MoeConfig config;
  config.num_experts = 4;
  config.top_k = 2;
  config.expert_ffn_size = 5;
  config.num_shared_experts = 1;
  config.shared_expert_ffn_size = 4;
  config.capacity_factor = 1.0;
  config.drop_policy = policy;
  const int64_t C = 6;
  MoeLayer layer(config, C, 0.2, 0.1);
  {
    NoGradGuard no_grad;
    Tensor router = layer.state_dict().at("gate.weight");
    normal_(router, 0.0, 0.05);
    for (int64_t e = 0; e < 4; ++e) router.select(0, e).narrow(0, 0, 1).fill_(e == 0 ? 2.0 : e == 1 ? 1.0 : -1.0);
  }
  Tensor x = randn({2, 5, C});
  {
    NoGradGuard no_grad;
    x.select(2, 0).fill_(3.0);
  }
  MoeLayerStats stats;
  Tensor out = layer.forward(x, &stats);
  EXPECT_EQ(stats.dropped, 10);
  EXPECT_EQ(stats.tokens_per_expert.to_vector<int64_t>(), (std::vector<int64_t>{5, 5, 0, 0}));
  EXPECT_LT(max_relative_error(out, naive_moe(layer, config, x)), 1e-5);
  if (policy == DropPolicy::kPosition) {
    // Tokens 5..9 lost both slots: only the shared expert's output is left.
    MoeConfig shared_only = config;
    shared_only.top_k = 0;
    Tensor expected = naive_moe(layer, shared_only, x).reshape({10, C}).narrow(0, 5, 5);
    EXPECT_LT(max_relative_error(out.reshape({10, C}).narrow(0, 5, 5), expected), 1e-6);
  }
}

TEST(MoeLayer, Capacity1DropPolicyProbsMatchesPerTokenLoop) { check_capacity(DropPolicy::kProbs); }
TEST(MoeLayer, Capacity1DropPolicyPositionMatchesPerTokenLoop) { check_capacity(DropPolicy::kPosition); }

MoeConfig all_losses(MoeConfig config) {
  config.load_balance_coeff = 0.01;
  config.sequence_load_balance_coeff = 0.02;
  config.global_load_balance_coeff = 0.03;
  config.z_loss_coeff = 0.001;
  return config;
}

TEST(MoeLayer, GradientReachesEveryParameter) {
  MoeConfig config = all_losses(fine_grained_config());
  MoeLayer layer(config, 12, 0.2, 0.1);
  Tensor x = randn({2, 6, 12}).set_requires_grad(true);
  MoeLayerStats stats;
  Tensor out = layer.forward(x, &stats);
  Tensor loss = sum(out * randn(out.shape())) + stats.load_balance_loss + stats.sequence_load_balance_loss +
                stats.global_load_balance_loss + stats.z_loss;
  loss.backward();
  ASSERT_TRUE(x.grad().defined());
  for (const auto& [name, parameter] : layer.named_parameters()) {
    ASSERT_TRUE(parameter.grad().defined()) << name;
    EXPECT_GT(sum(abs(parameter.grad())).item(), 0.0) << name;
  }
}

TEST(MoeLayer, StatsLossesDefinedWhenEnabledWithCoefficientsApplied) {
  MoeConfig config = all_losses(top2_config());
  MoeLayer layer(config, 16, 0.2, 0.1);
  Tensor x = randn({2, 5, 16});
  MoeLayerStats stats;
  layer.forward(x, &stats);
  for (const Tensor* loss : {&stats.load_balance_loss, &stats.sequence_load_balance_loss,
                             &stats.global_load_balance_loss, &stats.z_loss}) {
    ASSERT_TRUE(loss->defined());
    EXPECT_EQ(loss->dim(), 0);
    EXPECT_TRUE(std::isfinite(loss->item()));
  }
  RoutingOutput routing = layer.router().forward(x.reshape({10, 16}));
  EXPECT_NEAR(stats.load_balance_loss.item(), 0.01 * load_balancing_loss(routing.scores, routing.topk_indices).item(),
              1e-7);
  EXPECT_NEAR(stats.z_loss.item(), 0.001 * router_z_loss(routing.logits).item(), 1e-8);

  MoeLayer plain(top2_config(), 16, 0.2, 0.1);
  plain.forward(x, &stats);
  EXPECT_FALSE(stats.load_balance_loss.defined());
  EXPECT_FALSE(stats.sequence_load_balance_loss.defined());
  EXPECT_FALSE(stats.global_load_balance_loss.defined());
  EXPECT_FALSE(stats.z_loss.defined());
}

TEST(MoeLayer, GlobalCountsAccumulateUntilReset) {
  MoeConfig config = all_losses(top2_config());
  MoeLayer layer(config, 16, 0.2, 0.1);
  Tensor first = randn({2, 5, 16}), second = randn({2, 5, 16});
  MoeLayerStats stats;
  layer.forward(first, &stats);
  layer.forward(second, &stats);
  EXPECT_EQ(sum(layer.step_tokens_per_expert()).item(), 2 * 10 * 2);
  // The second forward's global loss saw both micro-batches' counts.
  RoutingOutput a = layer.router().forward(first.reshape({10, 16}));
  RoutingOutput b = layer.router().forward(second.reshape({10, 16}));
  Tensor counts = count_tokens_per_expert(a.topk_indices, 8) + count_tokens_per_expert(b.topk_indices, 8);
  EXPECT_NEAR(stats.global_load_balance_loss.item(),
              0.03 * global_load_balancing_loss(b.scores, counts, 40).item(), 1e-7);
  layer.reset_step_counts();
  EXPECT_EQ(sum(layer.step_tokens_per_expert()).item(), 0);
}

}  // namespace
}  // namespace sy::testing
