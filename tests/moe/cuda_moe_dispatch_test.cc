// The MoE token path on CUDA against the CPU: routing's top-k, then permute -> grouped SwiGLU
// experts -> weighted un-permute (dropless, and capacity with padding rows), outputs and the
// gradients of x, w1, w2; Module::to(CUDA); the whole MoeLayer forward against the CPU.
// Every test skips without a device.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/ops/ops.h"
#include "core/random.h"
#include "moe/dispatch_local.h"
#include "core/nn/linear.h"
#include "moe/experts.h"
#include "moe/moe_layer.h"

namespace sy::testing {
namespace {

const Device kGpu = Device::CUDA(0);
const Device kCpu = Device::CPU();

Tensor random_tensor(const Shape& shape, uint64_t seed, double low = -1, double high = 1) {
  std::vector<double> values(shape_numel(shape));
  for (size_t i = 0; i < values.size(); ++i) values[i] = low + (high - low) * philox_uniform({seed, 0}, i);
  return Tensor::from_vector(values, shape, DType::kF32);
}

double max_abs_difference(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  std::vector<double> x = a.to(kCpu).to_vector<double>(), y = b.to(kCpu).to_vector<double>();
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) worst = std::max(worst, std::abs(x[i] - y[i]));
  return worst;
}

constexpr int64_t N = 24, C = 16, F = 8, E = 6, K = 2;

// The token path on `device` for a plan and weights computed on the CPU; returns the output
// and the gradients of x, w1, w2 for the upstream gradient dout.
std::vector<Tensor> token_path(Device device, const DispatchPlan& plan, const Tensor& topk_weights) {
  Tensor x = random_tensor({N, C}, 71).to(device).set_requires_grad(true);
  Tensor w1 = random_tensor({E, C, 2 * F}, 72).to(device).set_requires_grad(true);
  Tensor w2 = random_tensor({E, F, C}, 73).to(device).set_requires_grad(true);
  Tensor y = grouped_swiglu(permute_tokens(x, plan), w1, w2, plan.tokens_per_expert);
  Tensor out = unpermute_tokens(y, plan, topk_weights.to(device), N);
  out.backward(random_tensor({N, C}, 74).to(device));
  return {out, x.grad(), w1.grad(), w2.grad()};
}

void expect_token_path_matches_cpu(double capacity_factor, bool pad_to_capacity) {
  // Routing on the CPU (its weights need gather and reductions); the indices' top-k on CUDA.
  Tensor logits = random_tensor({N, E}, 75, -2, 2);
  Tensor topk_indices = topk(logits, K, -1).second;
  EXPECT_EQ(topk(logits.to(kGpu), K, -1).second.to(kCpu).to_vector<int64_t>(), topk_indices.to_vector<int64_t>());
  Tensor topk_weights = softmax(gather(logits, 1, topk_indices), -1);
  const DispatchPlan plan = plan_dispatch(topk_indices, topk_weights, E, capacity_factor, DropPolicy::kProbs,
                                          pad_to_capacity);
  EXPECT_EQ(plan.padded > 0, pad_to_capacity);
  const std::vector<Tensor> cpu = token_path(kCpu, plan, topk_weights);
  const std::vector<Tensor> gpu = token_path(kGpu, plan, topk_weights);
  const char* names[] = {"out", "dx", "dw1", "dw2"};
  for (size_t i = 0; i < cpu.size(); ++i) {
    EXPECT_TRUE(gpu[i].device() == kGpu) << names[i];
    EXPECT_LE(max_abs_difference(gpu[i], cpu[i]), 1e-4) << names[i];
  }
}

TEST(CudaMoeTokenPath, DroplessMatchesCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: the CUDA MoE path is compiled but not run";
  expect_token_path_matches_cpu(0.0, false);
}

TEST(CudaMoeTokenPath, CapacityWithPaddingRowsMatchesCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: the CUDA MoE path is compiled but not run";
  expect_token_path_matches_cpu(1.5, true);
}

TEST(CudaModule, ToMovesEveryParameterInPlaceKeepingLeaves) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: Module::to(CUDA) is compiled but not run";
  Linear layer(C, F, /*bias=*/true);
  const Tensor held = layer.weight;  // a handle taken before the move
  const std::vector<float> values = layer.weight.to_vector<float>();
  layer.to(kGpu);
  EXPECT_TRUE(held.device() == kGpu);
  EXPECT_TRUE(layer.weight.same(held));
  EXPECT_EQ(held.to(kCpu).to_vector<float>(), values);
  for (const auto& [name, p] : layer.named_parameters()) {
    EXPECT_TRUE(p.device() == kGpu) << name;
    EXPECT_TRUE(p.is_leaf() && p.requires_grad()) << name;
  }
  Tensor x = random_tensor({N, C}, 76).to(kGpu);
  sum(layer.forward(x)).backward();
  ASSERT_TRUE(layer.weight.grad().defined());
  EXPECT_TRUE(layer.weight.grad().device() == kGpu);
}

// A layer built on the CPU, a second one loaded from its state dict and moved to CUDA: the
// same input gives the same output and balancing losses (softmax top-2, two gated shared
// experts, every loss on: gather, sum/mean/max, bincount and scatter_add on CUDA).
TEST(CudaMoeLayer, ForwardOnCudaMatchesCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: the CUDA MoE path is compiled but not run";
  MoeConfig config;
  config.num_experts = E;
  config.top_k = K;
  config.expert_ffn_size = F;
  config.num_shared_experts = 2;
  config.shared_expert_ffn_size = F;
  config.shared_expert_gate = true;
  config.renormalize = true;
  config.load_balance_coeff = 0.01;
  config.sequence_load_balance_coeff = 0.02;
  config.global_load_balance_coeff = 0.03;
  config.z_loss_coeff = 0.001;
  MoeLayer cpu_layer(config, C, 0.2, 0.1);
  MoeLayer gpu_layer(config, C, 0.2, 0.1);
  ASSERT_TRUE(gpu_layer.load_state_dict(cpu_layer.state_dict()).ok());
  gpu_layer.to(kGpu);
  Tensor x = random_tensor({2, N / 2, C}, 77);
  MoeLayerStats cpu_stats, gpu_stats;
  Tensor cpu_out = cpu_layer.forward(x, &cpu_stats);
  Tensor gpu_out = gpu_layer.forward(x.to(kGpu), &gpu_stats);
  EXPECT_TRUE(gpu_out.device() == kGpu);
  EXPECT_LE(max_abs_difference(gpu_out, cpu_out), 1e-4);
  EXPECT_LE(max_abs_difference(gpu_stats.load_balance_loss, cpu_stats.load_balance_loss), 1e-6);
  EXPECT_LE(max_abs_difference(gpu_stats.sequence_load_balance_loss, cpu_stats.sequence_load_balance_loss), 1e-6);
  EXPECT_LE(max_abs_difference(gpu_stats.global_load_balance_loss, cpu_stats.global_load_balance_loss), 1e-6);
  EXPECT_LE(max_abs_difference(gpu_stats.z_loss, cpu_stats.z_loss), 1e-6);
  EXPECT_EQ(gpu_stats.tokens_per_expert.to_vector<int64_t>(), cpu_stats.tokens_per_expert.to_vector<int64_t>());
}

// Forward and backward of a DeepSeek-V3-style layer (sigmoid scores, group-limited routing,
// expert bias, backward through experts, router and shared expert) on CUDA against the CPU.
TEST(CudaMoeLayer, SigmoidGroupLimitedForwardAndBackwardMatchCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: the CUDA MoE path is compiled but not run";
  MoeConfig config;
  config.num_experts = E;
  config.top_k = K;
  config.expert_ffn_size = F;
  config.num_shared_experts = 1;
  config.shared_expert_ffn_size = F;
  config.score_function = ScoreFunction::kSigmoid;
  config.renormalize = true;
  config.num_groups = 2;
  config.group_topk = 1;
  config.expert_bias = true;
  config.global_load_balance_coeff = 0.01;
  MoeLayer cpu_layer(config, C, 0.2, 0.1);
  MoeLayer gpu_layer(config, C, 0.2, 0.1);
  ASSERT_TRUE(gpu_layer.load_state_dict(cpu_layer.state_dict()).ok());
  gpu_layer.to(kGpu);
  Tensor x = random_tensor({2, N / 2, C}, 78);
  MoeLayerStats cpu_stats, gpu_stats;
  Tensor cpu_loss = sum(cpu_layer.forward(x, &cpu_stats)) + cpu_stats.global_load_balance_loss;
  Tensor gpu_loss = sum(gpu_layer.forward(x.to(kGpu), &gpu_stats)) + gpu_stats.global_load_balance_loss;
  EXPECT_LE(max_abs_difference(gpu_loss, cpu_loss), 1e-3);
  EXPECT_EQ(gpu_stats.tokens_per_expert.to_vector<int64_t>(), cpu_stats.tokens_per_expert.to_vector<int64_t>());
  cpu_loss.backward();
  gpu_loss.backward();
  auto cpu_parameters = cpu_layer.named_parameters(), gpu_parameters = gpu_layer.named_parameters();
  ASSERT_EQ(cpu_parameters.size(), gpu_parameters.size());
  for (size_t i = 0; i < cpu_parameters.size(); ++i) {
    ASSERT_TRUE(gpu_parameters[i].second.grad().defined()) << gpu_parameters[i].first;
    EXPECT_LE(max_abs_difference(gpu_parameters[i].second.grad(), cpu_parameters[i].second.grad()), 1e-3)
        << cpu_parameters[i].first;
  }
}

}  // namespace
}  // namespace sy::testing
