// The transformer's structure, initialization, loss composition and FLOP accounting
// (numerics against PyTorch live in model_reference_test.cc).
#include <cmath>
#include <set>

#include <gtest/gtest.h>

#include "core/ops/ops.h"
#include "moe/model.h"

namespace sy::testing {
namespace {

// V 64, C 32, L 2, H 4, Hkv 2 (D 8), dense width 48.
ModelConfig moe_config();  // below, with the MoE tests

ModelConfig dense_config() {
  ModelConfig c;
  c.vocab_size = 64;
  c.hidden_size = 32;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.ffn_size = 48;
  c.max_seq_len = 16;
  c.seed = 5;
  return c;
}

std::map<std::string, Shape> shapes_of(const Transformer& model) {
  std::map<std::string, Shape> shapes;
  for (const auto& [name, p] : model.named_parameters()) shapes[name] = p.shape();
  return shapes;
}

TEST(Transformer, DenseParameterNamesAndShapesFollowLlama) {
  Transformer model(dense_config());
  const std::map<std::string, Shape> expected = {
      {"embed_tokens.weight", {64, 32}},
      {"layers.0.input_layernorm.weight", {32}},
      {"layers.0.self_attn.q_proj.weight", {32, 32}},
      {"layers.0.self_attn.k_proj.weight", {16, 32}},
      {"layers.0.self_attn.v_proj.weight", {16, 32}},
      {"layers.0.self_attn.o_proj.weight", {32, 32}},
      {"layers.0.post_attention_layernorm.weight", {32}},
      {"layers.0.mlp.gate_proj.weight", {48, 32}},
      {"layers.0.mlp.up_proj.weight", {48, 32}},
      {"layers.0.mlp.down_proj.weight", {32, 48}},
      {"layers.1.input_layernorm.weight", {32}},
      {"layers.1.self_attn.q_proj.weight", {32, 32}},
      {"layers.1.self_attn.k_proj.weight", {16, 32}},
      {"layers.1.self_attn.v_proj.weight", {16, 32}},
      {"layers.1.self_attn.o_proj.weight", {32, 32}},
      {"layers.1.post_attention_layernorm.weight", {32}},
      {"layers.1.mlp.gate_proj.weight", {48, 32}},
      {"layers.1.mlp.up_proj.weight", {48, 32}},
      {"layers.1.mlp.down_proj.weight", {32, 48}},
      {"norm.weight", {32}},
      {"lm_head.weight", {64, 32}},
  };
  EXPECT_EQ(shapes_of(model), expected);
  // The rotary tables are derived, not saved.
  for (const auto& [name, tensor] : model.state_dict()) EXPECT_EQ(name.find("rotary"), std::string::npos) << name;
}

TEST(Transformer, TiedEmbeddingsHaveNoLmHeadAndShareTheGradient) {
  ModelConfig c = dense_config();
  c.tie_embeddings = true;
  Transformer model(c);
  EXPECT_EQ(shapes_of(model).count("lm_head.weight"), 0u);
  EXPECT_EQ(model.num_parameters(), count_flops(c, 8).total_parameters);
  Tensor tokens = Tensor::from_vector(std::vector<int64_t>{1, 2, 3, 4}, {1, 4}, DType::kI64);
  ModelOutput out = model.forward(tokens, tokens);
  out.loss.backward();
  // Row 63 is never looked up, so its gradient comes from the LM head alone.
  Tensor grad;
  for (const auto& [name, p] : model.named_parameters()) {
    if (name == "embed_tokens.weight") grad = p.grad();
  }
  ASSERT_TRUE(grad.defined());
  EXPECT_GT(sum(abs(grad.narrow(0, 63, 1))).item(), 0.0);
}

TEST(Transformer, SameSeedSameWeightsOtherSeedOtherWeights) {
  ModelConfig c = dense_config();
  Transformer a(c), b(c);
  c.seed = 6;
  Transformer other(c);
  StateDict sa = a.state_dict(), sb = b.state_dict(), so = other.state_dict();
  for (const auto& [name, tensor] : sa) {
    EXPECT_EQ(tensor.to_vector<float>(), sb.at(name).to_vector<float>()) << name;
    if (tensor.dim() == 2) {
      EXPECT_NE(tensor.to_vector<float>(), so.at(name).to_vector<float>()) << name;
    }
  }
}

TEST(Transformer, InitStdScalesOutputProjectionsByOneOverSqrtTwoL) {
  ModelConfig c = dense_config();
  c.hidden_size = 128;
  c.num_heads = 4;
  c.num_kv_heads = 4;
  c.ffn_size = 256;
  c.num_layers = 8;
  c.init_std = 0.05;
  Transformer model(c);
  const double output_std = 0.05 / std::sqrt(16.0);
  for (const auto& [name, p] : model.named_parameters()) {
    SCOPED_TRACE(name);
    std::vector<float> values = p.to_vector<float>();
    double mean = 0, square = 0;
    for (float v : values) mean += v;
    mean /= values.size();
    for (float v : values) square += (v - mean) * (v - mean);
    const double std = std::sqrt(square / values.size());
    if (p.dim() == 1) {
      EXPECT_EQ(mean, 1.0);  // norms start at one
      EXPECT_EQ(std, 0.0);
      continue;
    }
    const bool output = name.find("o_proj") != std::string::npos || name.find("down_proj") != std::string::npos;
    const double expected = output ? output_std : 0.05;
    // >= 16384 draws: the sample std is within a few percent.
    EXPECT_NEAR(std, expected, 0.05 * expected);
    EXPECT_NEAR(mean, 0.0, 0.05 * expected);
  }
}

TEST(Transformer, ConstructionLeavesTheDefaultGeneratorAlone) {
  manual_seed(123);
  Tensor before = randn({8});
  for (const ModelConfig& config : {dense_config(), moe_config()}) {
    manual_seed(123);
    Transformer model(config);
    Tensor after = randn({8});
    EXPECT_EQ(before.to_vector<float>(), after.to_vector<float>());
  }
}

TEST(Transformer, DenseLossIsLmLossAndIgnoresMinus100) {
  Transformer model(dense_config());
  Tensor tokens = Tensor::from_vector(std::vector<int64_t>{5, 9, 2, 7, 1, 3}, {2, 3}, DType::kI64);
  Tensor targets = Tensor::from_vector(std::vector<int64_t>{9, -100, 7, 1, -100, 4}, {2, 3}, DType::kI64);
  ModelOutput out = model.forward(tokens, targets);
  EXPECT_EQ(out.logits.shape(), (Shape{2, 3, 64}));
  EXPECT_TRUE(out.moe_layers.empty());
  EXPECT_EQ(out.aux_loss.item(), 0.0);
  EXPECT_EQ(out.loss.item(), out.lm_loss.item());
  // Mean over the 4 kept positions of -log softmax(logits)[target].
  Tensor log_probs = log_softmax(out.logits.detach().to(DType::kF64), -1);
  double expected = 0;
  std::vector<int64_t> t = targets.to_vector<int64_t>();
  for (int64_t i = 0; i < 6; ++i) {
    if (t[i] == -100) continue;
    expected -= log_probs.reshape({6, 64}).narrow(0, i, 1).narrow(1, t[i], 1).item();
  }
  EXPECT_NEAR(out.lm_loss.item(), expected / 4, 1e-5);
  // Without targets there is no loss.
  ModelOutput no_targets = model.forward(tokens);
  EXPECT_FALSE(no_targets.lm_loss.defined());
  EXPECT_FALSE(no_targets.loss.defined());
}

// V 64, C 32, L 2, H 4, Hkv 2, D 8, dense width 48, T = 8, by hand:
//   attention 32*32 (q) + 32*16 (k) + 32*16 (v) + 32*32 (o) = 3072; norms 2*32 = 64;
//   FFN 3*32*48 = 4608; per layer 7744, two layers 15488; embedding 2048, final norm 32,
//   LM head 2048: total 19616. Matmul parameters 2 * (3072 + 4608) + 2048 = 17408.
//   Forward: 2 * 17408 + 2 layers * (2 * 2 * 8 * 32 / 2 = 512) = 35840; training 3x = 107520.
TEST(CountFlops, DenseMatchesHandCountAndTheModel) {
  const ModelConfig c = dense_config();
  FlopCount count = count_flops(c, 8);
  EXPECT_EQ(count.total_parameters, 19616);
  EXPECT_EQ(count.active_parameters, 19616);
  EXPECT_EQ(count.matmul_parameters, 17408);
  EXPECT_EQ(count.forward_flops_per_token, 35840.0);
  EXPECT_EQ(count.training_flops_per_token, 107520.0);
  EXPECT_EQ(count.total_parameters, Transformer(c).num_parameters());
}

TEST(CountFlops, TiedHeadStillCountsItsMatmul) {
  ModelConfig c = dense_config();
  c.tie_embeddings = true;
  FlopCount count = count_flops(c, 8);
  EXPECT_EQ(count.total_parameters, 19616 - 2048);
  EXPECT_EQ(count.matmul_parameters, 17408);
}

// dense_config with layer 1 an MoE layer: E 8, top-2, F 16, one shared expert of 16, gated.
ModelConfig moe_config() {
  ModelConfig c = dense_config();
  c.first_k_dense_layers = 1;
  c.moe.num_experts = 8;
  c.moe.top_k = 2;
  c.moe.expert_ffn_size = 16;
  c.moe.num_shared_experts = 1;
  c.moe.shared_expert_ffn_size = 16;
  c.moe.shared_expert_gate = true;
  c.moe.expert_bias = true;
  return c;
}

TEST(Transformer, MoeLayerNamesFollowQwen2MoeAndDeepSeek) {
  Transformer model(moe_config());
  const std::map<std::string, Shape> shapes = shapes_of(model);
  const std::map<std::string, Shape> expected_mlp = {
      {"layers.1.mlp.gate.weight", {8, 32}},
      {"layers.1.mlp.experts.w1", {8, 32, 32}},
      {"layers.1.mlp.experts.w2", {8, 16, 32}},
      {"layers.1.mlp.shared_experts.gate_proj.weight", {16, 32}},
      {"layers.1.mlp.shared_experts.up_proj.weight", {16, 32}},
      {"layers.1.mlp.shared_experts.down_proj.weight", {32, 16}},
      {"layers.1.mlp.shared_expert_gate.weight", {1, 32}},
  };
  std::map<std::string, Shape> mlp;
  for (const auto& [name, shape] : shapes) {
    if (name.rfind("layers.1.mlp.", 0) == 0) mlp[name] = shape;
  }
  EXPECT_EQ(mlp, expected_mlp);
  EXPECT_EQ(shapes.at("layers.0.mlp.gate_proj.weight"), (Shape{48, 32}));
  // The expert bias is a saved buffer, not a parameter.
  StateDict state = model.state_dict();
  ASSERT_EQ(state.count("layers.1.mlp.gate.expert_bias"), 1u);
  EXPECT_EQ(state.at("layers.1.mlp.gate.expert_bias").shape(), (Shape{8}));
  EXPECT_EQ(model.moe_layers().size(), 1u);
}

TEST(Transformer, MoeInitFollowsTheSeedAndScalesW2) {
  ModelConfig c = moe_config();
  c.moe.num_experts = 64;
  c.moe.top_k = 2;
  c.moe.expert_ffn_size = 64;
  c.init_std = 0.05;
  Transformer a(c), b(c);
  StateDict sa = a.state_dict(), sb = b.state_dict();
  for (const auto& [name, tensor] : sa) EXPECT_EQ(tensor.to_vector<float>(), sb.at(name).to_vector<float>()) << name;
  auto sample_std = [](const Tensor& t) {
    std::vector<float> values = t.to_vector<float>();
    double square = 0;
    for (float v : values) square += double(v) * v;
    return std::sqrt(square / values.size());
  };
  EXPECT_NEAR(sample_std(sa.at("layers.1.mlp.experts.w1")), 0.05, 0.002);
  EXPECT_NEAR(sample_std(sa.at("layers.1.mlp.experts.w2")), 0.05 / 2.0, 0.001);  // 1/sqrt(2L), L = 2
  EXPECT_NEAR(sample_std(sa.at("layers.1.mlp.gate.weight")), 0.05, 0.005);
  EXPECT_EQ(sample_std(sa.at("layers.1.mlp.gate.expert_bias")), 0.0);
}

TEST(Transformer, LossIsLmLossPlusEveryEnabledAuxLoss) {
  ModelConfig c = moe_config();
  c.num_layers = 3;  // layers 1 and 2 are MoE
  c.moe.load_balance_coeff = 0.01;
  c.moe.z_loss_coeff = 0.001;
  c.moe.sequence_load_balance_coeff = 0.02;
  Transformer model(c);
  Tensor tokens = Tensor::from_vector(std::vector<int64_t>{5, 9, 2, 7, 1, 3}, {2, 3}, DType::kI64);
  ModelOutput out = model.forward(tokens, tokens);
  ASSERT_EQ(out.moe_layers.size(), 2u);
  double aux = 0;
  for (const MoeLayerStats& stats : out.moe_layers) {
    ASSERT_TRUE(stats.load_balance_loss.defined() && stats.z_loss.defined() &&
                stats.sequence_load_balance_loss.defined());
    EXPECT_FALSE(stats.global_load_balance_loss.defined());
    aux += stats.load_balance_loss.item() + stats.z_loss.item() + stats.sequence_load_balance_loss.item();
  }
  EXPECT_NEAR(out.aux_loss.item(), aux, 1e-7);
  EXPECT_GT(out.aux_loss.item(), 0.0);
  EXPECT_NEAR(out.loss.item(), out.lm_loss.item() + aux, 1e-6);
}

// Recomputation trades memory for time only: the same loss and bit-identical gradients,
// global load-balancing counts included (the MoE half is not run twice).
TEST(Transformer, RecomputeGivesTheSameLossAndGradients) {
  ModelConfig c = moe_config();
  c.num_layers = 3;
  c.moe.global_load_balance_coeff = 0.01;
  c.moe.z_loss_coeff = 0.001;
  Tensor tokens = Tensor::from_vector(std::vector<int64_t>{5, 9, 2, 7, 1, 3, 8, 4}, {2, 4}, DType::kI64);
  std::vector<std::vector<float>> grads[2];
  double losses[2];
  for (int recompute = 0; recompute < 2; ++recompute) {
    Transformer model(c);
    model.set_recompute(recompute == 1);
    for (int micro = 0; micro < 2; ++micro) {  // two micro-batches: the step counts grow
      ModelOutput out = model.forward(tokens, tokens);
      out.loss.backward();
      losses[recompute] = out.loss.item();
    }
    for (const auto& [name, p] : model.named_parameters()) grads[recompute].push_back(p.grad().to_vector<float>());
  }
  EXPECT_EQ(losses[0], losses[1]);
  ASSERT_EQ(grads[0].size(), grads[1].size());
  for (size_t i = 0; i < grads[0].size(); ++i) EXPECT_EQ(grads[0][i], grads[1][i]) << "parameter " << i;
}

// The dense config plus, in layer 1: router 8*32 = 256, experts 8 * 3*32*16 = 12288, shared
// expert 3*32*16 = 1536, shared gate 32. Layer 1 holds 3072 + 64 + 256 + 12288 + 1536 + 32 =
// 17248 against the dense 7744: total 19616 - 7744 + 17248 = 29120. A token skips 6 of 8
// experts: active 29120 - 6 * 1536 = 19904. Matmul: layer 0 7680, layer 1 3072 + 256 +
// 2 * 1536 + 1536 + 32 = 7968, head 2048: 17696. Forward at T = 8: 2 * 17696 + 2 * 512 = 36416.
TEST(CountFlops, MoeMatchesHandCountAndTheModel) {
  const ModelConfig c = moe_config();
  FlopCount count = count_flops(c, 8);
  EXPECT_EQ(count.total_parameters, 29120);
  EXPECT_EQ(count.active_parameters, 19904);
  EXPECT_EQ(count.matmul_parameters, 17696);
  EXPECT_EQ(count.forward_flops_per_token, 36416.0);
  EXPECT_EQ(count.training_flops_per_token, 3 * 36416.0);
  EXPECT_EQ(count.total_parameters, Transformer(c).num_parameters());
}

// A fine-grained config (E 64, K 6, 2 shared, every other layer MoE, tied) against the model.
TEST(CountFlops, FineGrainedTotalEqualsTheModelsParameters) {
  ModelConfig c = dense_config();
  c.num_layers = 4;
  c.moe_layer_frequency = 2;
  c.tie_embeddings = true;
  c.moe.num_experts = 64;
  c.moe.top_k = 6;
  c.moe.expert_ffn_size = 16;
  c.moe.num_shared_experts = 2;
  c.moe.shared_expert_ffn_size = 16;
  FlopCount count = count_flops(c, 128);
  EXPECT_EQ(count.total_parameters, Transformer(c).num_parameters());
  EXPECT_EQ(count.total_parameters - count.active_parameters, 2 * (64 - 6) * 3 * 32 * 16);
}

}  // namespace
}  // namespace sy::testing
