// The dry run's report. The memory model, per process:
//   parameters      every parameter in f32 (the model keeps f32 weights; CUDA computes in bf16
//                   from them), routed experts divided by parallel.expert
//   gradients       one f32 per parameter
//   optimizer state AdamW: exp_avg + exp_avg_sq, 2 x f32 per parameter; SGD: momentum, f32
//                   (none when momentum is 0); plus an f32 master copy for non-f32 parameters
//   activations     what autograd keeps for the backward of one micro-batch of N = B x T tokens,
//                   in the activation dtype a (f32 on CPU, bf16 on CUDA) unless stated. Per token:
//     block input                    C                         (the residual stream)
//     attention                      4C + 2 Hkv D              normed input, q and k after RoPE,
//                                                              v, attention output, o_proj input
//                                    + (H + 1) f32             log-sum-exp per head, norm rstd
//     FFN input                      2C + 1 f32                residual, normed input, rstd
//     dense SwiGLU                   4 Fd                      gate, silu(gate), up, their product
//     MoE router                     2E + K f32, K i64         logits, scores, weights, indices
//                                    (+ C f32 when a is not f32: the router's f32 input)
//     MoE routed rows (K per token,  per row 2C + 4F           dispatched input, w1 output (2F),
//       E x ceil(N K cf / E) in all                            silu, product, expert output
//       when padded to capacity)
//     shared experts                 4 S                       as the dense SwiGLU, S = shared width
//     shared expert gate             C + 2                     shared output, gate logit, sigmoid
//     head (once)                    2C + V + 2 f32            final norm input and output, logits,
//                                                              rstd and cross-entropy log-sum-exp
//   With recomputation (moe/model.cc: the attention half of every block and dense FFN halves
//   run again in the backward; an MoE FFN keeps its activations, since running it twice would
//   count its tokens twice in the global balancing loss) the backward keeps per layer the block
//   input, and the FFN input C of a dense layer or the whole MoE FFN part, plus, while one half
//   is recomputed, the largest recomputed half, and the head.
#include "launch/dry_run.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "moe/model.h"

namespace sy {
namespace {

constexpr double kMiB = 1024.0 * 1024.0;

std::string thousands(int64_t value) {
  std::string digits = absl::StrCat(value < 0 ? -value : value);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return value < 0 ? "-" + out : out;
}

// "12.3 M", "4.56 G": FLOP counts for people.
std::string si(double value) {
  const char* units[] = {"", " k", " M", " G", " T", " P"};
  int unit = 0;
  while (std::abs(value) >= 1000 && unit < 5) {
    value /= 1000;
    ++unit;
  }
  return absl::StrFormat("%.3g%s", value, units[unit]);
}

// Bytes per token of what each part of the model saves for the backward.
struct LayerActivations {
  double attention = 0;  // the attention half without its input
  double ffn_input = 0;  // the residual entering the FFN half, its norm output and rstd
  double ffn = 0;        // the dense SwiGLU or the MoE layer
  bool moe = false;
};

struct ActivationBytes {
  double block_input = 0;
  std::vector<LayerActivations> layers;
  double head = 0;
};

ActivationBytes activation_bytes(const TrainConfig& config, int64_t tokens) {
  const ModelConfig& model = config.model;
  const MoeConfig& moe = model.moe;
  const double a = config.training.device == "cuda" ? 2 : 4;  // activation dtype bytes
  const double f32 = 4, i64 = 8;
  const double C = static_cast<double>(model.hidden_size), H = static_cast<double>(model.num_heads);
  const double kv = static_cast<double>(model.num_kv_heads * model.head_dim());
  ActivationBytes bytes;
  bytes.block_input = C * a;
  for (int64_t layer = 0; layer < model.num_layers; ++layer) {
    LayerActivations part;
    part.attention = (4 * C + 2 * kv) * a + (H + 1) * f32;
    part.ffn_input = 2 * C * a + f32;
    part.moe = model.is_moe_layer(layer);
    if (!part.moe) {
      part.ffn = 4 * static_cast<double>(model.ffn_size) * a;
    } else {
      const double E = static_cast<double>(moe.num_experts), K = static_cast<double>(moe.top_k);
      const double F = static_cast<double>(moe.expert_ffn_size);
      part.ffn = (2 * E + K) * f32 + K * i64 + (a == f32 ? 0 : C * f32);
      double rows_per_token = K;
      if (moe.pad_to_capacity && moe.capacity_factor > 0 && tokens > 0) {
        const double N = static_cast<double>(tokens);
        rows_per_token = E * std::ceil(N * K / E * moe.capacity_factor) / N;
      }
      part.ffn += rows_per_token * (2 * C + 4 * F) * a;
      if (moe.num_shared_experts > 0) {
        part.ffn += 4 * static_cast<double>(moe.num_shared_experts * moe.shared_expert_ffn_size) * a;
        if (moe.shared_expert_gate) part.ffn += (C + 2) * a;
      }
    }
    bytes.layers.push_back(part);
  }
  bytes.head = (2 * C + static_cast<double>(model.vocab_size)) * a + 2 * f32;
  return bytes;
}

// Routed-expert parameters of the whole model (they are split over parallel.expert).
int64_t routed_expert_parameters(const ModelConfig& model) {
  int64_t count = 0;
  for (int64_t layer = 0; layer < model.num_layers; ++layer) {
    if (model.is_moe_layer(layer)) count += model.moe.num_experts * 3 * model.hidden_size * model.moe.expert_ffn_size;
  }
  return count;
}

double parameters_per_process(const TrainConfig& config) {
  const FlopCount count = count_flops(config.model, config.data.seq_length);
  const int64_t routed = routed_expert_parameters(config.model);
  return static_cast<double>(count.total_parameters - routed) +
         static_cast<double>(routed) / static_cast<double>(config.parallel.expert);
}

}  // namespace

MemoryEstimate estimate_memory(const TrainConfig& config) {
  const double parameters = parameters_per_process(config);
  const double parameter_bytes = 4;  // the model's parameters are f32
  MemoryEstimate estimate;
  estimate.parameters = parameters * parameter_bytes;
  estimate.gradients = parameters * parameter_bytes;
  double state_per_parameter = 0;
  if (config.optimizer.type == OptimizerType::kAdamW) state_per_parameter = 2 * 4;
  if (config.optimizer.type == OptimizerType::kSgd && config.optimizer.momentum > 0) state_per_parameter = 4;
  if (parameter_bytes != 4) state_per_parameter += 4;  // f32 master weights
  estimate.optimizer_state = parameters * state_per_parameter;

  const int64_t tokens = config.training.micro_batch_size * config.data.seq_length;
  const ActivationBytes bytes = activation_bytes(config, tokens);
  double all = bytes.head, kept = bytes.head, largest_recomputed = 0;
  for (const LayerActivations& layer : bytes.layers) {
    all += bytes.block_input + layer.attention + layer.ffn_input + layer.ffn;
    // Recomputed halves keep their input: the block input, and h for a dense FFN half.
    kept += bytes.block_input + (layer.moe ? layer.ffn_input + layer.ffn : bytes.block_input);
    largest_recomputed = std::max(largest_recomputed, layer.attention);
    if (!layer.moe) largest_recomputed = std::max(largest_recomputed, layer.ffn_input - bytes.block_input + layer.ffn);
  }
  const double N = static_cast<double>(tokens);
  estimate.activations = N * all;
  estimate.activations_recompute = N * (kept + largest_recomputed);
  return estimate;
}

std::string describe_run(const TrainConfig& config) {
  const ModelConfig& model = config.model;
  const MoeConfig& moe = model.moe;
  const int64_t T = config.data.seq_length;
  const FlopCount count = count_flops(model, T);
  const MemoryEstimate memory = estimate_memory(config);
  std::string out = "# resolved configuration\n";
  absl::StrAppend(&out, config_to_yaml(config), "\n# run\n");

  int64_t moe_layers = 0;
  for (int64_t layer = 0; layer < model.num_layers; ++layer) moe_layers += model.is_moe_layer(layer) ? 1 : 0;
  std::string shape = absl::StrFormat("%d layers, C %d, H %d (KV %d), V %d", model.num_layers, model.hidden_size,
                                      model.num_heads, model.num_kv_heads, model.vocab_size);
  if (moe_layers == 0) {
    absl::StrAppend(&shape, "; dense, FFN ", model.ffn_size);
  } else {
    if (moe_layers < model.num_layers) {
      absl::StrAppendFormat(&shape, "; %d dense (FFN %d) +", model.num_layers - moe_layers, model.ffn_size);
    } else {
      absl::StrAppend(&shape, ";");
    }
    absl::StrAppendFormat(&shape, " %d MoE: E %d, K %d, F %d", moe_layers, moe.num_experts, moe.top_k,
                          moe.expert_ffn_size);
    if (moe.num_shared_experts > 0) {
      absl::StrAppendFormat(&shape, ", %d shared of %d%s", moe.num_shared_experts, moe.shared_expert_ffn_size,
                            moe.shared_expert_gate ? " (gated)" : "");
    }
  }
  absl::StrAppendFormat(&out, "%-24s %s\n", "model", shape);
  absl::StrAppendFormat(&out, "%-24s total %s, active %s (%.1f%%)\n", "parameters", thousands(count.total_parameters),
                        thousands(count.active_parameters),
                        100.0 * static_cast<double>(count.active_parameters) / static_cast<double>(count.total_parameters));
  absl::StrAppendFormat(&out, "%-24s %sFLOP training (3 x %sFLOP forward) at T = %d\n", "per token",
                        si(count.training_flops_per_token), si(count.forward_flops_per_token), T);
  const double tokens_per_step = static_cast<double>(config.training.global_batch_size * T);
  absl::StrAppendFormat(&out, "%-24s %sFLOP, %s tokens (micro-batch %d x accumulation %d x data %d sequences)\n",
                        "per step", si(count.training_flops_per_token * tokens_per_step),
                        thousands(static_cast<int64_t>(tokens_per_step)), config.training.micro_batch_size,
                        config.gradient_accumulation_steps(), config.parallel.data);
  absl::StrAppendFormat(&out, "%-24s %sFLOP, %s tokens in %d steps\n", "whole run",
                        si(count.training_flops_per_token * tokens_per_step * static_cast<double>(config.training.steps)),
                        si(tokens_per_step * static_cast<double>(config.training.steps)), config.training.steps);

  const bool cuda = config.training.device == "cuda";
  absl::StrAppend(&out, "\n# memory per process, MiB (estimate: saved tensors, no transient buffers)\n");
  const std::string optimizer = config.optimizer.type == OptimizerType::kAdamW ? "AdamW exp_avg + exp_avg_sq, f32"
                                : config.optimizer.momentum > 0                  ? "SGD momentum, f32"
                                                                                 : "SGD without momentum: none";
  const std::string experts_split =
      config.parallel.expert > 1 ? absl::StrCat(", routed experts / ", config.parallel.expert) : "";
  auto row = [&](const char* name, double bytes, const std::string& note) {
    absl::StrAppendFormat(&out, "%-24s %10.1f   %s\n", name, bytes / kMiB, note);
  };
  row("parameters", memory.parameters,
      absl::StrCat(thousands(static_cast<int64_t>(parameters_per_process(config))), " x f32", experts_split));
  row("gradients", memory.gradients, "f32");
  row("optimizer state", memory.optimizer_state, optimizer);
  const std::string batch = absl::StrFormat("micro-batch %d x %d tokens, %s", config.training.micro_batch_size, T,
                                            cuda ? "bf16" : "f32");
  row("activations", memory.activations, absl::StrCat(batch, ", every block"));
  row("activations, recompute", memory.activations_recompute,
      "attention and dense FFN halves recomputed, MoE FFNs kept");
  row("total", memory.total(config.training.recompute),
      config.training.recompute ? "with recomputation (training.recompute: true)"
                                : "without recomputation (training.recompute: false)");
  return out;
}

}  // namespace sy
