// The dry run: the memory estimate against sums worked out by hand from the formula in
// launch/dry_run.cc, and the report on every shipped config.
#include "launch/dry_run.h"

#include <cstdio>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/allocator.h"
#include "moe/model.h"

namespace sy::testing {
namespace {

// V 16, C 8, L 2, H 2, Hkv 1 (D 4), dense Fd 16; B 2 x T 4 on the CPU (f32).
TrainConfig tiny_dense() {
  TrainConfig config;
  config.model.vocab_size = 16;
  config.model.hidden_size = 8;
  config.model.num_layers = 2;
  config.model.num_heads = 2;
  config.model.num_kv_heads = 1;
  config.model.ffn_size = 16;
  config.data.seq_length = 4;
  config.training.micro_batch_size = 2;
  return config;
}

TEST(DryRunMemory, DenseActivationsByHand) {
  const MemoryEstimate memory = estimate_memory(tiny_dense());
  // Per token, in bytes (f32):
  //   block input            C = 8                                  -> 32
  //   attention              (4C + 2 Hkv D) = 40 values + (H + 1) = 3 f32 -> 160 + 12 = 172
  //   FFN input              2C = 16 values + 1 f32                  -> 68
  //   dense SwiGLU           4 Fd = 64                               -> 256
  //   head                   2C + V = 32 values + 2 f32              -> 136
  // Without recomputation: N = 8 tokens x (2 x 32 + 2 x (172 + 68 + 256) + 136) = 8 x 1192.
  EXPECT_DOUBLE_EQ(memory.activations, 8 * 1192);
  // With it, per layer the block input and the dense half's input h (2 x (32 + 32)), the largest
  // recomputed half (the dense one: 68 - 32 + 256 = 292 over attention's 172), the head:
  // 8 x (128 + 292 + 136).
  EXPECT_DOUBLE_EQ(memory.activations_recompute, 8 * 556);
}

TEST(DryRunMemory, MoeActivationsByHand) {
  TrainConfig config = tiny_dense();
  config.model.num_kv_heads = 2;
  config.model.first_k_dense_layers = 1;
  config.model.moe = {.num_experts = 4, .top_k = 2, .expert_ffn_size = 8, .num_shared_experts = 1,
                      .shared_expert_ffn_size = 8, .shared_expert_gate = true};
  config.training.micro_batch_size = 1;
  const MemoryEstimate memory = estimate_memory(config);
  // Per token, in bytes (f32): block input 32; attention (32 + 16) x 4 + 3 x 4 = 204; FFN input 68;
  // layer 0 dense 4 Fd = 256; layer 1 MoE: router (2E + K) f32 + K i64 = 40 + 16 = 56, K = 2 rows
  // of (2C + 4F) = 48 values = 384, shared 4 S = 32 values = 128, shared gate C + 2 = 10 values =
  // 40, so 608; head 136. N = 4 tokens.
  EXPECT_DOUBLE_EQ(memory.activations, 4 * (2 * 32 + 2 * 204 + 2 * 68 + 256 + 608 + 136));
  // Recomputation keeps layer 0's input and h (64), layer 1's input and its whole MoE FFN part
  // (32 + 68 + 608), the largest recomputed half (dense: 68 - 32 + 256 = 292) and the head.
  EXPECT_DOUBLE_EQ(memory.activations_recompute, 4 * (64 + 708 + 292 + 136));
}

TEST(DryRunMemory, CudaActivationsAreHalfTheBytesOfTheBf16Tensors) {
  TrainConfig config = tiny_dense();
  config.training.device = "cuda";
  const MemoryEstimate memory = estimate_memory(config);
  // The f32 statistics stay 4 bytes: per block (H + 1) + 1 = 4 of them, 2 in the head.
  const double f32_per_token = 2 * 4 * 4 + 2 * 4;
  const double halved = (8 * 1192 - 8 * f32_per_token) / 2;
  EXPECT_DOUBLE_EQ(memory.activations, halved + 8 * f32_per_token);
}

TEST(DryRunMemory, ParametersGradientsAndOptimizerState) {
  TrainConfig config = tiny_dense();
  const double parameters = static_cast<double>(count_flops(config.model, 4).total_parameters);
  MemoryEstimate memory = estimate_memory(config);
  EXPECT_DOUBLE_EQ(memory.parameters, 4 * parameters);
  EXPECT_DOUBLE_EQ(memory.gradients, 4 * parameters);
  EXPECT_DOUBLE_EQ(memory.optimizer_state, 8 * parameters);  // AdamW: two f32 moments
  config.optimizer.type = OptimizerType::kSgd;
  EXPECT_DOUBLE_EQ(estimate_memory(config).optimizer_state, 4 * parameters);  // momentum
  config.optimizer.momentum = 0;
  EXPECT_DOUBLE_EQ(estimate_memory(config).optimizer_state, 0);
  EXPECT_DOUBLE_EQ(memory.total(false), 16 * parameters + memory.activations);
  EXPECT_DOUBLE_EQ(memory.total(true), 16 * parameters + memory.activations_recompute);
}

TEST(DryRunMemory, ExpertParallelSplitsTheRoutedExperts) {
  TrainConfig config = tiny_dense();
  config.model.moe = {.num_experts = 4, .top_k = 2, .expert_ffn_size = 8};
  const double total = static_cast<double>(count_flops(config.model, 4).total_parameters);
  const double routed = 2 * 4 * 3 * 8 * 8;  // layers x E x 3 C F
  config.parallel.expert = 4;
  EXPECT_DOUBLE_EQ(estimate_memory(config).parameters, 4 * (total - routed + routed / 4));
}

TEST(DryRun, ReportsConfigCountsAndMemoryForEveryShippedConfig) {
  for (const auto& entry : std::filesystem::directory_iterator(std::filesystem::path(SY_SOURCE_DIR) / "configs")) {
    if (entry.path().extension() != ".yaml") continue;
    absl::StatusOr<TrainConfig> config = load_config(entry.path().string());
    ASSERT_TRUE(config.ok()) << config.status();
    const std::string report = describe_run(*config);
    const FlopCount count = count_flops(config->model, config->data.seq_length);
    EXPECT_TRUE(absl::StrContains(report, config_to_yaml(*config))) << entry.path();
    for (const char* part : {"parameters", "per token", "optimizer state", "activations, recompute", "total"}) {
      EXPECT_TRUE(absl::StrContains(report, part)) << entry.path() << " lacks " << part << ":\n" << report;
    }
    const double active_share = static_cast<double>(count.active_parameters) / static_cast<double>(count.total_parameters);
    EXPECT_TRUE(absl::StrContains(report, absl::StrFormat("(%.1f%%)", 100 * active_share))) << report;
    std::printf("%s\n%s\n", entry.path().filename().c_str(), report.substr(report.find("# run")).c_str());
  }
}

}  // namespace
}  // namespace sy::testing

namespace sy::testing {
namespace {

// The estimate against the bytes the CPU allocator holds once the forward has built the graph
// (the saved tensors, the logits and the loss), for the quickstart model on a small micro-batch.
TEST(DryRunMemory, ActivationEstimateIsCloseToWhatTheQuickstartModelKeeps) {
  absl::StatusOr<TrainConfig> config = load_config(absl::StrCat(SY_SOURCE_DIR, "/configs/quickstart.yaml"));
  ASSERT_TRUE(config.ok()) << config.status();
  config->training.micro_batch_size = 2;
  const int64_t B = 2, T = config->data.seq_length, V = config->model.vocab_size;
  std::vector<int64_t> ids(B * T);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int64_t>((i * 7919 + 13) % V);
  const Tensor tokens = Tensor::from_vector(ids, {B, T}, DType::kI64);
  const MemoryEstimate estimate = estimate_memory(*config);
  for (bool recompute : {false, true}) {
    Transformer model(config->model);
    model.set_recompute(recompute);
    const size_t before = cpu_allocator_stats().current_bytes;
    ModelOutput out = model.forward(tokens, tokens);
    const double kept = static_cast<double>(cpu_allocator_stats().current_bytes - before);
    // After the forward no half is being recomputed yet: the recompute estimate less its largest
    // recomputed half, the dense layer's FFN (normed input C + rstd + 4 Fd = 512 + 4 + 12288 bytes
    // a token; the attention half is 6C values + 5 f32 = 3092).
    const double expected = recompute ? estimate.activations_recompute - static_cast<double>(B * T) * 12804
                                      : estimate.activations;
    EXPECT_NEAR(kept, expected, 0.05 * expected) << "recompute " << recompute;
    EXPECT_TRUE(out.loss.defined());
  }
}

}  // namespace
}  // namespace sy::testing
