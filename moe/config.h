// The model's shape and its MoE settings: one typed struct, validated in one place. The
// Training issue reads it from YAML (configs/README.md documents every key).
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace sy {

enum class ScoreFunction { kSoftmax, kSigmoid };
enum class DropPolicy { kProbs, kPosition };

struct MoeConfig {
  int64_t num_experts = 0;        // E; 0 makes every layer dense
  int64_t top_k = 2;              // K
  int64_t expert_ffn_size = 0;    // F of each routed expert (fine-grained: << dense width)
  int64_t num_shared_experts = 0;
  int64_t shared_expert_ffn_size = 0;  // the shared FFN is num_shared_experts * this wide
  bool shared_expert_gate = false;     // Qwen2-MoE: sigmoid(x . w_gate) scales the shared output

  // Router.
  ScoreFunction score_function = ScoreFunction::kSoftmax;
  // Softmax over all experts before top-k (DeepSeek); otherwise top-k on the logits and a
  // softmax over the K chosen (Mixtral). Ignored for sigmoid.
  bool pre_softmax = false;
  bool renormalize = false;        // top-k weights divided by their sum (required for sigmoid)
  double routing_scale = 1.0;      // multiplies the final weights (DeepSeek routed_scaling_factor)
  int64_t num_groups = 1;          // group-limited routing: experts split in groups ...
  int64_t group_topk = 1;          // ... of which the best (by top-2 score sum) are eligible
  bool expert_bias = false;        // aux-loss-free balancing: a bias for selection only
  double bias_update_rate = 1e-3;  // bias_i += rate * sign(mean_load - load_i) after each step
  double input_jitter = 0.0;       // multiplicative U[1-eps, 1+eps] noise on router input (training)

  // Balancing losses (coefficient 0 disables).
  double load_balance_coeff = 0.0;           // micro-batch scope
  double sequence_load_balance_coeff = 0.0;  // per sequence (DeepSeek-V2)
  double global_load_balance_coeff = 0.0;    // counts over every micro-batch of the step
  double z_loss_coeff = 0.0;

  // Capacity (0: dropless).
  double capacity_factor = 0.0;
  DropPolicy drop_policy = DropPolicy::kProbs;
  bool pad_to_capacity = false;

  bool operator==(const MoeConfig&) const = default;
};

struct ModelConfig {
  int64_t vocab_size = 256;     // V
  int64_t hidden_size = 64;     // C
  int64_t num_layers = 2;       // L
  int64_t num_heads = 4;        // H
  int64_t num_kv_heads = 4;     // Hkv (GQA when < H)
  int64_t ffn_size = 256;       // dense SwiGLU width
  int64_t max_seq_len = 128;
  double rope_theta = 10000.0;
  double norm_eps = 1e-6;
  bool tie_embeddings = false;
  double init_std = 0.02;
  uint64_t seed = 0;
  // Which layers are MoE: layer l (0-based) is MoE when moe.num_experts > 0,
  // l >= first_k_dense_layers and (l - first_k_dense_layers) % moe_layer_frequency == 0.
  int64_t first_k_dense_layers = 0;
  int64_t moe_layer_frequency = 1;
  MoeConfig moe;

  int64_t head_dim() const { return hidden_size / num_heads; }  // D
  bool is_moe_layer(int64_t layer) const;
  // Checks every size and range, naming the key and what was expected.
  absl::Status validate() const;
  bool operator==(const ModelConfig&) const = default;
};

}  // namespace sy
