// nn modules: hierarchical names, modes, state dicts and their errors, and each module
// against a hand-written composition of ops.
#include "core/nn/nn.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/ops/ops.h"

namespace sy {
namespace {

// Deterministic values in [-scale, scale).
Tensor filled(const Shape& shape, uint64_t salt, double scale = 1.0) {
  std::vector<double> values(shape_numel(shape));
  uint64_t state = salt * 0x9E3779B97F4A7C15ull + 1;
  for (double& v : values) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    v = scale * (static_cast<double>(state >> 11) / 9007199254740992.0 * 2.0 - 1.0);
  }
  return Tensor::from_vector(values, shape);
}

// Overwrites every parameter with fresh deterministic values (a differently trained model).
void scramble(Module& module, uint64_t salt) {
  NoGradGuard no_grad;
  for (Tensor& p : module.parameters()) p.copy_(filled(p.shape(), salt++, 0.5));
}

::testing::AssertionResult contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\" does not contain \"" << part << "\"";
}

double max_abs_difference(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) worst = std::max(worst, std::abs(x[i] - y[i]));
  return worst;
}

// A Llama-shaped toy without attention: embed, blocks of (norm, MLP), final norm.
class MlpBlock : public Module {
 public:
  MlpBlock(int64_t C, int64_t F)
      : input_layernorm(register_module("input_layernorm", std::make_shared<RMSNorm>(C))),
        mlp(register_module("mlp", std::make_shared<SwiGLU>(C, F))) {}
  Tensor forward(const Tensor& x) const { return x + mlp->forward(input_layernorm->forward(x)); }

  std::shared_ptr<RMSNorm> input_layernorm;
  std::shared_ptr<SwiGLU> mlp;
};

class ToyModel : public Module {
 public:
  ToyModel(int64_t V, int64_t C, int64_t F, int layers_count)
      : embed_tokens(register_module("embed_tokens", std::make_shared<Embedding>(V, C))),
        layers(register_module("layers", std::make_shared<ModuleList>())) {
    for (int i = 0; i < layers_count; ++i) layers->append(std::make_shared<MlpBlock>(C, F));
    norm = register_module("norm", std::make_shared<RMSNorm>(C));
    lm_head = register_module("lm_head", std::make_shared<Linear>(C, V, /*bias=*/true));
  }
  Tensor forward(const Tensor& ids) const {
    Tensor h = embed_tokens->forward(ids);
    for (int64_t i = 0; i < layers->size(); ++i) h = layers->at<MlpBlock>(i).forward(h);
    return lm_head->forward(norm->forward(h));
  }

  std::shared_ptr<Embedding> embed_tokens;
  std::shared_ptr<ModuleList> layers;
  std::shared_ptr<RMSNorm> norm;
  std::shared_ptr<Linear> lm_head;
};

Tensor toy_ids() {
  return Tensor::from_vector(std::vector<int64_t>{1, 5, 2, 7, 0, 3}, {2, 3}, DType::kI64);
}

TEST(Module, HierarchicalNamesInRegistrationOrder) {
  ToyModel model(11, 8, 12, 2);
  std::vector<std::string> names;
  for (const auto& [name, p] : model.named_parameters()) names.push_back(name);
  std::vector<std::string> expected = {
      "embed_tokens.weight",
      "layers.0.input_layernorm.weight", "layers.0.mlp.gate_proj.weight",
      "layers.0.mlp.up_proj.weight", "layers.0.mlp.down_proj.weight",
      "layers.1.input_layernorm.weight", "layers.1.mlp.gate_proj.weight",
      "layers.1.mlp.up_proj.weight", "layers.1.mlp.down_proj.weight",
      "norm.weight", "lm_head.weight", "lm_head.bias"};
  EXPECT_EQ(names, expected);
  // The names lead to the fields, and every parameter is a leaf requiring grad.
  auto named = model.named_parameters();
  EXPECT_TRUE(named[4].second.same(model.layers->at<MlpBlock>(0).mlp->down_proj->weight));
  EXPECT_EQ(named[4].second.shape(), (Shape{8, 12}));
  for (const Tensor& p : model.parameters()) EXPECT_TRUE(p.is_leaf() && p.requires_grad());
  std::vector<std::string> modules;
  for (const auto& [name, module] : model.named_modules()) modules.push_back(name);
  EXPECT_EQ(modules[0], "");
  EXPECT_EQ(modules[4], "layers.0.input_layernorm");
  EXPECT_EQ(modules.size(), 1u + 1 + 1 + 2 * (1 + 1 + 1 + 3) + 1 + 1);
}

TEST(Module, NumParametersCountsEveryElementOnce) {
  ToyModel model(11, 8, 12, 2);
  int64_t expected = 11 * 8 + 2 * (8 + 3 * 8 * 12) + 8 + (11 * 8 + 11);
  EXPECT_EQ(model.num_parameters(), expected);
  // A tied weight is one parameter, listed under its first name.
  class Tied : public Module {
   public:
    Tied() {
      Tensor shared = Tensor::zeros({4, 3});
      register_parameter("a", shared);
      register_parameter("b", shared);
    }
  } tied;
  EXPECT_EQ(tied.num_parameters(), 12);
  ASSERT_EQ(tied.named_parameters().size(), 1u);
  EXPECT_EQ(tied.named_parameters()[0].first, "a");
}

TEST(Module, RegisteringANameTwiceFails) {
  class Twice : public Module {
   public:
    Twice() {
      register_parameter("w", Tensor::zeros({2}));
      register_module("w", std::make_shared<RMSNorm>(2));
    }
  };
  EXPECT_THROW(Twice(), Error);
  class Dotted : public Module {
   public:
    Dotted() { register_parameter("a.b", Tensor::zeros({2})); }
  };
  EXPECT_THROW(Dotted(), Error);
}

TEST(Module, TrainAndEvalPropagateToEveryDescendant) {
  ToyModel model(11, 8, 12, 2);
  for (const auto& [name, module] : model.named_modules()) EXPECT_TRUE(module->is_training()) << name;
  model.eval();
  for (const auto& [name, module] : model.named_modules()) EXPECT_FALSE(module->is_training()) << name;
  model.layers->append(std::make_shared<MlpBlock>(8, 12));  // joins in its parent's mode
  EXPECT_FALSE(model.layers->at<MlpBlock>(2).mlp->up_proj->is_training());
  model.layers->at<MlpBlock>(1).train();  // only that subtree
  EXPECT_TRUE(model.layers->at<MlpBlock>(1).mlp->gate_proj->is_training());
  EXPECT_FALSE(model.layers->at<MlpBlock>(0).mlp->gate_proj->is_training());
  model.train();
  for (const auto& [name, module] : model.named_modules()) EXPECT_TRUE(module->is_training()) << name;
}

TEST(Module, ZeroGradDropsGradients) {
  ToyModel model(11, 8, 12, 1);
  sum(model.forward(toy_ids())).backward();
  for (const auto& [name, p] : model.named_parameters()) EXPECT_TRUE(p.grad().defined()) << name;
  model.zero_grad();
  for (const auto& [name, p] : model.named_parameters()) EXPECT_FALSE(p.grad().defined()) << name;
}

TEST(Module, ToTheCurrentDeviceKeepsStorageGradientsAndLeaves) {
  ToyModel model(11, 8, 12, 1);
  sum(model.forward(toy_ids())).backward();
  std::vector<std::pair<std::string, Tensor>> before = model.named_parameters();
  std::vector<const void*> storages, grads;
  for (const auto& [name, p] : before) {
    storages.push_back(p.storage().get());
    grads.push_back(p.grad().storage().get());
  }
  model.to(Device::CPU());
  std::vector<std::pair<std::string, Tensor>> after = model.named_parameters();
  ASSERT_EQ(after.size(), before.size());
  for (size_t i = 0; i < after.size(); ++i) {
    const Tensor& p = after[i].second;
    EXPECT_TRUE(p.same(before[i].second)) << after[i].first;
    EXPECT_EQ(p.storage().get(), storages[i]) << after[i].first;
    EXPECT_EQ(p.grad().storage().get(), grads[i]) << after[i].first;
    EXPECT_TRUE(p.is_leaf() && p.requires_grad()) << after[i].first;
  }
  // The handle a subclass holds is the registered tensor.
  bool found = false;
  for (const auto& [name, p] : after) found = found || (name == "lm_head.weight" && p.same(model.lm_head->weight));
  EXPECT_TRUE(found);
}

TEST(Module, GradientReachesEveryParameter) {
  ToyModel model(11, 8, 12, 2);
  scramble(model, 3);
  Tensor logits = model.forward(toy_ids());  // (B, T, V)
  EXPECT_EQ(logits.shape(), (Shape{2, 3, 11}));
  sum(logits * logits).backward();
  for (const auto& [name, p] : model.named_parameters()) {
    ASSERT_TRUE(p.grad().defined()) << name;
    double norm = sum(p.grad() * p.grad()).item();
    EXPECT_GT(norm, 0.0) << name;
  }
}

TEST(StateDict, RoundTripIntoAFreshModuleGivesIdenticalOutputs) {
  ToyModel trained(11, 8, 12, 2);
  scramble(trained, 1);
  StateDict state = trained.state_dict();
  EXPECT_EQ(state.size(), 12u);
  ToyModel fresh(11, 8, 12, 2);
  scramble(fresh, 100);
  Tensor ids = toy_ids();
  EXPECT_GT(max_abs_difference(fresh.forward(ids), trained.forward(ids)), 0.0);
  ASSERT_TRUE(fresh.load_state_dict(state).ok());
  EXPECT_EQ(fresh.forward(ids).to_vector<float>(), trained.forward(ids).to_vector<float>());
  // Loading copies: the fields keep their own storage, still leaves that require grad.
  EXPECT_NE(fresh.lm_head->weight.storage(), trained.lm_head->weight.storage());
  EXPECT_TRUE(fresh.lm_head->weight.is_leaf() && fresh.lm_head->weight.requires_grad());
}

TEST(StateDict, SharesStorageAndCarriesNoHistory) {
  Linear layer(3, 2, /*bias=*/true);
  StateDict state = layer.state_dict();
  ASSERT_EQ(state.size(), 2u);
  EXPECT_EQ(state.at("weight").storage(), layer.weight.storage());
  EXPECT_FALSE(state.at("weight").requires_grad());
}

TEST(StateDict, ConvertsDtype) {
  Linear source(3, 2, true);
  scramble(source, 5);
  StateDict state = source.state_dict();
  for (auto& [name, tensor] : state) tensor = tensor.to(DType::kF64);
  Linear target(3, 2, true);
  ASSERT_TRUE(target.load_state_dict(state).ok());
  EXPECT_EQ(target.weight.dtype(), DType::kF32);
  EXPECT_EQ(target.weight.to_vector<float>(), source.weight.to_vector<float>());
}

TEST(StateDict, MissingKeyIsNamedAndNothingChanges) {
  ToyModel model(11, 8, 12, 1);
  StateDict state = model.state_dict();
  ToyModel other(11, 8, 12, 1);
  scramble(other, 9);
  StateDict changed = other.state_dict();
  changed.erase("layers.0.mlp.up_proj.weight");
  std::vector<float> before = model.lm_head->weight.to_vector<float>();
  absl::Status status = model.load_state_dict(changed);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(contains(std::string(status.message()), "missing key 'layers.0.mlp.up_proj.weight'"));
  EXPECT_EQ(model.lm_head->weight.to_vector<float>(), before);
}

TEST(StateDict, UnexpectedKeyIsNamed) {
  Linear layer(3, 2);
  StateDict state = layer.state_dict();
  state["bias"] = Tensor::zeros({2});
  absl::Status status = layer.load_state_dict(state);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(contains(std::string(status.message()), "unexpected key 'bias'"));
}

TEST(StateDict, ShapeMismatchNamesKeyAndBothShapes) {
  ToyModel model(11, 8, 12, 1);
  StateDict state = model.state_dict();
  state["layers.0.mlp.gate_proj.weight"] = Tensor::zeros({12, 9});
  absl::Status status = model.load_state_dict(state);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  std::string message(status.message());
  EXPECT_TRUE(contains(message, "'layers.0.mlp.gate_proj.weight'"));
  EXPECT_TRUE(contains(message, "(12, 9)"));
  EXPECT_TRUE(contains(message, "(12, 8)"));
}

TEST(StateDict, ReportsEveryProblemAtOnce) {
  Linear layer(3, 2, true);
  StateDict state = layer.state_dict();
  state.erase("bias");
  state["weight"] = Tensor::zeros({3, 2});
  state["extra"] = Tensor::zeros({1});
  std::string message(layer.load_state_dict(state).message());
  EXPECT_TRUE(contains(message, "missing key 'bias'"));
  EXPECT_TRUE(contains(message, "shape mismatch for 'weight'"));
  EXPECT_TRUE(contains(message, "unexpected key 'extra'"));
}

TEST(LinearModule, MatchesMatmulPlusBias) {
  Linear layer(5, 4, /*bias=*/true);
  scramble(layer, 11);
  EXPECT_EQ(layer.weight.shape(), (Shape{4, 5}));
  Tensor x = filled({2, 3, 5}, 12);
  Tensor expected = matmul(x, layer.weight.t()) + layer.bias;
  EXPECT_LT(max_abs_difference(layer.forward(x), expected), 1e-6);
  Linear no_bias(5, 4);
  EXPECT_FALSE(no_bias.bias.defined());
  EXPECT_EQ(no_bias.named_parameters().size(), 1u);
}

TEST(LinearModule, InitialWeightsHaveTheRequestedSpread) {
  Linear layer(64, 128, /*bias=*/true, /*init_std=*/0.05);
  std::vector<double> w = layer.weight.to_vector<double>();
  double mean = 0, square = 0;
  for (double v : w) {
    mean += v;
    square += v * v;
  }
  mean /= w.size();
  double std = std::sqrt(square / w.size() - mean * mean);
  EXPECT_NEAR(mean, 0.0, 0.005);
  EXPECT_NEAR(std, 0.05, 0.005);
  EXPECT_EQ(layer.bias.to_vector<float>(), std::vector<float>(128, 0.0f));
}

TEST(LinearModule, InitIsReproducibleFromTheGenerator) {
  Generator a(7), b(7), c(8);
  Linear from_a(6, 5, false, 0.02, &a), from_b(6, 5, false, 0.02, &b), from_c(6, 5, false, 0.02, &c);
  EXPECT_EQ(from_a.weight.to_vector<float>(), from_b.weight.to_vector<float>());
  EXPECT_NE(from_a.weight.to_vector<float>(), from_c.weight.to_vector<float>());
  // Consecutive layers draw different values from one generator.
  Linear next(6, 5, false, 0.02, &a);
  EXPECT_NE(next.weight.to_vector<float>(), from_a.weight.to_vector<float>());
}

TEST(SwiGLUModule, MatchesHandWrittenComposition) {
  SwiGLU mlp(6, 10);
  scramble(mlp, 21);
  Tensor x = filled({2, 3, 6}, 22);
  Tensor gate = matmul(x, mlp.gate_proj->weight.t());
  Tensor up = matmul(x, mlp.up_proj->weight.t());
  Tensor hidden = gate * sigmoid(gate) * up;
  Tensor expected = matmul(hidden, mlp.down_proj->weight.t());
  EXPECT_LT(max_abs_difference(mlp.forward(x), expected), 1e-6);
  EXPECT_EQ(mlp.down_proj->weight.shape(), (Shape{6, 10}));
}

TEST(NormModules, MatchHandWrittenCompositions) {
  Tensor x = filled({3, 6}, 31);
  RMSNorm rms(6, 1e-6);
  LayerNorm ln(6, 1e-5);
  scramble(rms, 32);
  scramble(ln, 33);
  Tensor expected_rms = x * rsqrt(mean(x * x, {-1}, true) + 1e-6) * rms.weight;
  EXPECT_LT(max_abs_difference(rms.forward(x), expected_rms), 1e-5);
  Tensor centered = x - mean(x, {-1}, true);
  Tensor expected_ln =
      centered * rsqrt(mean(centered * centered, {-1}, true) + 1e-5) * ln.weight + ln.bias;
  EXPECT_LT(max_abs_difference(ln.forward(x), expected_ln), 1e-5);
  EXPECT_EQ(LayerNorm(6, 1e-5, /*bias=*/false).named_parameters().size(), 1u);
}

TEST(EmbeddingModule, PicksRowsOfTheTable) {
  Embedding table(7, 4);
  scramble(table, 41);
  Tensor ids = Tensor::from_vector(std::vector<int64_t>{6, 0, 6}, {3}, DType::kI64);
  Tensor out = table.forward(ids);
  EXPECT_EQ(out.shape(), (Shape{3, 4}));
  EXPECT_EQ(out.select(0, 0).to_vector<float>(), table.weight.select(0, 6).to_vector<float>());
  EXPECT_EQ(out.select(0, 1).to_vector<float>(), table.weight.select(0, 0).to_vector<float>());
}

}  // namespace
}  // namespace sy

namespace sy {
namespace {

AttentionShape small_attention() {
  AttentionShape shape;
  shape.C = 16;
  shape.H = 4;
  shape.Hkv = 2;
  shape.max_T = 12;
  return shape;
}

TEST(CausalSelfAttentionModule, NamesShapesAndBuffersOutOfStateDict) {
  CausalSelfAttention attention(small_attention());
  std::vector<std::string> names;
  for (const auto& [name, p] : attention.named_parameters()) names.push_back(name);
  EXPECT_EQ(names, (std::vector<std::string>{"q_proj.weight", "k_proj.weight", "v_proj.weight",
                                             "o_proj.weight"}));
  EXPECT_EQ(attention.q_proj->weight.shape(), (Shape{16, 16}));  // (H*D, C)
  EXPECT_EQ(attention.k_proj->weight.shape(), (Shape{8, 16}));   // (Hkv*D, C)
  EXPECT_EQ(attention.o_proj->weight.shape(), (Shape{16, 16}));  // (C, H*D)
  // The rotary tables are buffers: no gradient, not in the checkpoint.
  EXPECT_EQ(attention.named_buffers().size(), 2u);
  EXPECT_EQ(attention.named_buffers()[0].first, "rotary_emb.cos");
  EXPECT_EQ(attention.state_dict().size(), 4u);
}

TEST(CausalSelfAttentionModule, OutputShapeAndCausality) {
  CausalSelfAttention attention(small_attention(), /*init_std=*/0.3);
  scramble(attention, 51);
  Tensor x = filled({2, 7, 16}, 52);
  Tensor out = attention.forward(x);
  EXPECT_EQ(out.shape(), (Shape{2, 7, 16}));
  // Changing token 4 changes outputs 4.. but not 0..3.
  Tensor changed = x.clone();
  changed.narrow(1, 4, 1).copy_(filled({2, 1, 16}, 53));
  Tensor out_changed = attention.forward(changed);
  EXPECT_EQ(out_changed.narrow(1, 0, 4).to_vector<float>(), out.narrow(1, 0, 4).to_vector<float>());
  for (int64_t t = 4; t < 7; ++t) {
    EXPECT_GT(max_abs_difference(out_changed.narrow(1, t, 1), out.narrow(1, t, 1)), 1e-4) << t;
  }
}

TEST(CausalSelfAttentionModule, MatchesHandWrittenAttention) {
  // Reference: per head, softmax(q k^T / sqrt(D) + causal mask) v with rotated q, k.
  AttentionShape shape = small_attention();
  CausalSelfAttention attention(shape);
  scramble(attention, 61);
  int64_t B = 1, T = 5, H = shape.H, D = shape.C / shape.H;
  Tensor x = filled({B, T, shape.C}, 62);
  auto [cos, sin] = rotary_tables(T, D);
  Tensor q = rotary_embedding(matmul(x, attention.q_proj->weight.t()).reshape({B, T, H, D}), cos, sin);
  Tensor k = rotary_embedding(matmul(x, attention.k_proj->weight.t()).reshape({B, T, 2, D}), cos, sin);
  Tensor v = matmul(x, attention.v_proj->weight.t()).reshape({B, T, 2, D});
  std::vector<double> mask_values(T * T);
  for (int64_t i = 0; i < T; ++i) {
    for (int64_t j = 0; j < T; ++j) mask_values[i * T + j] = j > i ? -1e30 : 0.0;
  }
  Tensor mask = Tensor::from_vector(mask_values, {T, T});
  // o_proj of the concatenated heads = the sum over heads of each head's slice of o_proj.
  Tensor expected = Tensor::zeros({B, T, shape.C});
  for (int64_t h = 0; h < H; ++h) {
    Tensor qh = q.select(2, h), kh = k.select(2, h / 2), vh = v.select(2, h / 2);  // (B, T, D)
    Tensor scores = matmul(qh, kh.transpose(1, 2)) / std::sqrt(static_cast<double>(D)) + mask;
    Tensor head = matmul(softmax(scores, -1), vh);                                  // (B, T, D)
    expected = expected + matmul(head, attention.o_proj->weight.narrow(1, h * D, D).t());
  }
  EXPECT_LT(max_abs_difference(attention.forward(x), expected), 1e-5);
}

TEST(CausalSelfAttentionModule, GradientReachesEveryParameterAndInput) {
  CausalSelfAttention attention(small_attention());
  scramble(attention, 71);
  Tensor x = filled({2, 6, 16}, 72);
  x.set_requires_grad(true);
  Tensor out = attention.forward(x);
  sum(out * out).backward();
  for (const auto& [name, p] : attention.named_parameters()) {
    ASSERT_TRUE(p.grad().defined()) << name;
    EXPECT_GT(sum(p.grad() * p.grad()).item(), 0.0) << name;
  }
  EXPECT_GT(sum(x.grad() * x.grad()).item(), 0.0);
}

TEST(CausalSelfAttentionModule, LongerThanTablesFails) {
  CausalSelfAttention attention(small_attention());
  EXPECT_THROW(attention.forward(filled({1, 13, 16}, 81)), Error);
}

}  // namespace
}  // namespace sy
