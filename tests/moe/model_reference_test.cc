// The whole transformer (dense and MoE) against an independent PyTorch implementation
// (tests/reference/moe_model.py, f64) on our exported safetensors: logits, LM loss, each aux
// loss and every parameter gradient of one f32 forward/backward.
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "core/io/safetensors.h"
#include "moe/model.h"
#include "tests/support/scratch_directory.h"
#include "tests/support/torch_reference.h"

#ifndef SY_SOURCE_DIR
#define SY_SOURCE_DIR "."
#endif

namespace sy::testing {
namespace {

constexpr double kOutputTolerance = 1e-5;    // logits, LM loss, aux losses
constexpr double kGradientTolerance = 1e-4;  // every parameter gradient

// max |actual - expected| / max |expected|: the error relative to the tensor's scale, so a
// gradient entry near zero is judged against its tensor's largest entry.
double normwise_relative_error(const Tensor& actual, const Tensor& expected) {
  EXPECT_EQ(actual.shape(), expected.shape());
  if (actual.shape() != expected.shape()) return INFINITY;
  std::vector<double> a = actual.to(DType::kF64).to_vector<double>();
  std::vector<double> e = expected.to(DType::kF64).to_vector<double>();
  double difference = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    difference = std::max(difference, std::abs(a[i] - e[i]));
    scale = std::max(scale, std::abs(e[i]));
  }
  return scale > 0 ? difference / scale : difference;
}

const char* name_of(ScoreFunction f) { return f == ScoreFunction::kSigmoid ? "sigmoid" : "softmax"; }
const char* name_of(DropPolicy p) { return p == DropPolicy::kPosition ? "position" : "probs"; }

std::string config_json(const ModelConfig& c) {
  const MoeConfig& m = c.moe;
  nlohmann::json moe = {
      {"num_experts", m.num_experts}, {"top_k", m.top_k}, {"num_shared_experts", m.num_shared_experts},
      {"shared_expert_gate", m.shared_expert_gate}, {"score_function", name_of(m.score_function)},
      {"pre_softmax", m.pre_softmax}, {"renormalize", m.renormalize}, {"routing_scale", m.routing_scale},
      {"num_groups", m.num_groups}, {"group_topk", m.group_topk}, {"expert_bias", m.expert_bias},
      {"load_balance_coeff", m.load_balance_coeff}, {"sequence_load_balance_coeff", m.sequence_load_balance_coeff},
      {"global_load_balance_coeff", m.global_load_balance_coeff}, {"z_loss_coeff", m.z_loss_coeff},
      {"capacity_factor", m.capacity_factor}, {"drop_policy", name_of(m.drop_policy)}};
  nlohmann::json model = {{"num_layers", c.num_layers}, {"num_heads", c.num_heads},
                          {"num_kv_heads", c.num_kv_heads}, {"rope_theta", c.rope_theta},
                          {"norm_eps", c.norm_eps}, {"tie_embeddings", c.tie_embeddings},
                          {"first_k_dense_layers", c.first_k_dense_layers},
                          {"moe_layer_frequency", c.moe_layer_frequency}, {"moe", moe}};
  return model.dump(2);
}

// Runs tests/reference/moe_model.py on a directory holding the config, our parameters and
// buffers, and the batch; returns what it wrote (outputs.safetensors) by name.
absl::StatusOr<std::map<std::string, Tensor>> run_reference(const ModelConfig& config, const Transformer& model,
                                                             const Tensor& tokens, const Tensor& targets) {
  testing::ScratchDirectory scratch("sy_moe_model");
  if (!scratch.ok()) return absl::InternalError("cannot create a temporary directory");
  const std::filesystem::path& directory = scratch.path();

  std::ofstream((directory / "config.json").string()) << config_json(config);
  StateDict state = model.state_dict();
  std::vector<std::pair<std::string, Tensor>> tensors(state.begin(), state.end());
  if (absl::Status s = write_safetensors((directory / "params.safetensors").string(), tensors); !s.ok()) return s;
  if (absl::Status s = write_safetensors((directory / "batch.safetensors").string(),
                                         {{"tokens", tokens}, {"targets", targets}});
      !s.ok()) {
    return s;
  }
  const std::string log_path = (directory / "log.txt").string();
  const std::string command = absl::StrCat(find_torch_python().path, " '", SY_SOURCE_DIR,
                                           "/tests/reference/moe_model.py' '", directory.string(), "' > '",
                                           log_path, "' 2>&1");
  if (int code = std::system(command.c_str()); code != 0) {
    std::stringstream log;
    log << std::ifstream(log_path).rdbuf();
    return absl::InternalError(absl::StrCat(command, " failed (status ", code, "):\n", log.str()));
  }
  absl::StatusOr<SafetensorsFile> outputs = read_safetensors((directory / "outputs.safetensors").string());
  if (!outputs.ok()) return outputs.status();
  return std::map<std::string, Tensor>(outputs->tensors.begin(), outputs->tensors.end());
}

// B = 2, T = 8, V = 64, two layers; init_std large enough that routing is far from ties.
ModelConfig tiny_config() {
  ModelConfig c;
  c.vocab_size = 64;
  c.hidden_size = 32;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.ffn_size = 48;
  c.max_seq_len = 16;
  c.init_std = 0.1;
  c.seed = 7;
  return c;
}

// Our forward/backward against the reference; returns our output for further checks.
ModelOutput check_against_torch(const ModelConfig& config, bool randomize_bias = false) {
  if (find_torch_python().path.empty()) return {};
  EXPECT_TRUE(config.validate().ok()) << config.validate();
  Transformer model(config);
  if (randomize_bias) {
    // The bias starts at zero; a random one makes it move the selection.
    std::mt19937_64 rng(11);
    std::normal_distribution<double> normal(0.0, 0.05);
    for (MoeLayer* layer : model.moe_layers()) {
      std::vector<float> values(config.moe.num_experts);
      for (float& v : values) v = static_cast<float>(normal(rng));
      Tensor bias = layer->router().expert_bias();
      bias.copy_(Tensor::from_vector(values, {config.moe.num_experts}));
    }
  }
  const int64_t B = 2, T = 8;
  std::mt19937_64 rng(3);
  std::uniform_int_distribution<int64_t> token(0, config.vocab_size - 1);
  std::vector<int64_t> token_values(B * T), target_values(B * T);
  for (int64_t i = 0; i < B * T; ++i) {
    token_values[i] = token(rng);
    target_values[i] = i % 5 == 3 ? -100 : token(rng);  // some ignored positions
  }
  Tensor tokens = Tensor::from_vector(token_values, {B, T}, DType::kI64);
  Tensor targets = Tensor::from_vector(target_values, {B, T}, DType::kI64);

  ModelOutput out = model.forward(tokens, targets);
  out.loss.backward();

  absl::StatusOr<std::map<std::string, Tensor>> torch = run_reference(config, model, tokens, targets);
  EXPECT_TRUE(torch.ok()) << torch.status();
  if (!torch.ok()) return out;
  auto expect_close = [&](const std::string& name, const Tensor& ours, double tolerance) {
    SCOPED_TRACE(name);
    EXPECT_TRUE(torch->count(name)) << "the reference wrote no " << name;
    EXPECT_TRUE(ours.defined()) << "ours has no " << name;
    if (!torch->count(name) || !ours.defined()) return;
    EXPECT_LE(normwise_relative_error(ours, torch->at(name)), tolerance)
        << "ours  " << ours << "\ntorch " << torch->at(name);
  };
  expect_close("logits", out.logits, kOutputTolerance);
  expect_close("lm_loss", out.lm_loss, kOutputTolerance);

  // Every aux loss the reference computed, and no other.
  size_t aux_count = 0;
  std::vector<MoeLayer*> layers = model.moe_layers();
  for (int64_t layer = 0, moe_index = 0; layer < config.num_layers; ++layer) {
    if (!config.is_moe_layer(layer)) continue;
    const MoeLayerStats& stats = out.moe_layers.at(moe_index++);
    for (auto [name, loss] : {std::pair{"load_balance_loss", &stats.load_balance_loss},
                              {"sequence_load_balance_loss", &stats.sequence_load_balance_loss},
                              {"global_load_balance_loss", &stats.global_load_balance_loss},
                              {"z_loss", &stats.z_loss}}) {
      const std::string key = absl::StrCat("aux.", layer, ".", name);
      EXPECT_EQ(loss->defined(), torch->count(key) == 1) << key;
      if (!loss->defined()) continue;
      ++aux_count;
      expect_close(key, *loss, kOutputTolerance);
    }
  }
  size_t torch_aux = 0;
  for (const auto& [name, tensor] : *torch) torch_aux += name.rfind("aux.", 0) == 0;
  EXPECT_EQ(aux_count, torch_aux);

  const auto parameters = model.named_parameters();
  for (const auto& [name, parameter] : parameters) {
    expect_close("grad." + name, parameter.grad(), kGradientTolerance);
  }
  size_t torch_gradients = 0;
  for (const auto& [name, tensor] : *torch) torch_gradients += name.rfind("grad.", 0) == 0;
  EXPECT_EQ(torch_gradients, parameters.size()) << "the reference saw other parameters than ours";
  return out;
}

// tiny_config with MoE layers of E experts of width 16, top-K.
ModelConfig moe_config(int64_t E, int64_t K) {
  ModelConfig c = tiny_config();
  c.moe.num_experts = E;
  c.moe.top_k = K;
  c.moe.expert_ffn_size = 16;
  return c;
}

int64_t total_dropped(const ModelOutput& out) {
  int64_t dropped = 0;
  for (const MoeLayerStats& stats : out.moe_layers) dropped += stats.dropped;
  return dropped;
}

TEST(ModelReference, DenseGqa) {
  SY_REQUIRE_TORCH();
  check_against_torch(tiny_config());
}

TEST(ModelReference, DenseTiedEmbeddings) {
  SY_REQUIRE_TORCH();
  ModelConfig c = tiny_config();
  c.tie_embeddings = true;
  check_against_torch(c);
}

// Mixtral routing (top-k on the logits, softmax over the K) in layer 1 of 3: layer 0 is
// dense (first_k_dense_layers 1), layer 2 too (moe_layer_frequency 2).
TEST(ModelReference, E8Top2SoftmaxBetweenDenseLayers) {
  SY_REQUIRE_TORCH();
  ModelConfig c = moe_config(8, 2);
  c.num_layers = 3;
  c.first_k_dense_layers = 1;
  c.moe_layer_frequency = 2;
  c.moe.load_balance_coeff = 0.01;
  ModelOutput out = check_against_torch(c);
  EXPECT_EQ(out.moe_layers.size(), 1u);
}

// DeepSeekMoE-style fine-grained experts: softmax before top-k, 2 shared experts with the
// Qwen2-MoE sigmoid gate.
TEST(ModelReference, E64Top6FineGrainedTwoSharedExperts) {
  SY_REQUIRE_TORCH();
  ModelConfig c = moe_config(64, 6);
  c.moe.pre_softmax = true;
  c.moe.num_shared_experts = 2;
  c.moe.shared_expert_ffn_size = 16;
  c.moe.shared_expert_gate = true;
  c.moe.load_balance_coeff = 0.01;
  check_against_torch(c);
}

// DeepSeek-V3 routing: sigmoid scores, 4 groups of which the best 2 are eligible, a nonzero
// expert bias moving the selection, renormalized weights scaled by 2.5.
TEST(ModelReference, E16Top4SigmoidGroupLimitedExpertBias) {
  SY_REQUIRE_TORCH();
  ModelConfig c = moe_config(16, 4);
  c.moe.score_function = ScoreFunction::kSigmoid;
  c.moe.renormalize = true;
  c.moe.routing_scale = 2.5;
  c.moe.num_groups = 4;
  c.moe.group_topk = 2;
  c.moe.expert_bias = true;
  c.moe.num_shared_experts = 1;
  c.moe.shared_expert_ffn_size = 16;
  c.moe.sequence_load_balance_coeff = 0.01;
  check_against_torch(c, /*randomize_bias=*/true);
}

TEST(ModelReference, E8Top2Capacity1DropByProbs) {
  SY_REQUIRE_TORCH();
  ModelConfig c = moe_config(8, 2);
  c.moe.capacity_factor = 1.0;
  c.moe.drop_policy = DropPolicy::kProbs;
  c.moe.load_balance_coeff = 0.01;
  EXPECT_GT(total_dropped(check_against_torch(c)), 0) << "capacity 1.0 dropped nothing: the test checks no drop";
}

TEST(ModelReference, E8Top2Capacity1DropByPosition) {
  SY_REQUIRE_TORCH();
  ModelConfig c = moe_config(8, 2);
  c.moe.capacity_factor = 1.0;
  c.moe.drop_policy = DropPolicy::kPosition;
  EXPECT_GT(total_dropped(check_against_torch(c)), 0) << "capacity 1.0 dropped nothing: the test checks no drop";
}

// Every balancing loss at once: z-loss, sequence-wise, micro-batch and global-batch LBL,
// with pre-softmax renormalized weights.
TEST(ModelReference, E8Top2ZLossSequenceAndGlobalLoadBalance) {
  SY_REQUIRE_TORCH();
  ModelConfig c = moe_config(8, 2);
  c.moe.pre_softmax = true;
  c.moe.renormalize = true;
  c.moe.z_loss_coeff = 0.01;
  c.moe.sequence_load_balance_coeff = 0.1;
  c.moe.load_balance_coeff = 0.05;
  c.moe.global_load_balance_coeff = 0.02;
  ModelOutput out = check_against_torch(c);
  ASSERT_EQ(out.moe_layers.size(), 2u);
  EXPECT_TRUE(out.moe_layers[0].z_loss.defined() && out.moe_layers[0].sequence_load_balance_loss.defined());
}

}  // namespace
}  // namespace sy::testing
