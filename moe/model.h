// The decoder-only transformer our users pretrain: token embedding, L pre-norm blocks
// (RMSNorm, causal self-attention with RoPE and GQA, then a dense SwiGLU FFN or an MoE
// layer), final RMSNorm, LM head (tied or untied), cross-entropy. Parameter names are the
// Hugging Face Llama / Qwen2-MoE ones without the `model.` prefix (moe/README.md).
#pragma once

#include <memory>
#include <vector>

#include "core/nn/module.h"
#include "core/tensor.h"
#include "moe/config.h"
#include "moe/moe_layer.h"

namespace sy {

struct ModelOutput {
  Tensor logits;    // (B, T, V)
  Tensor lm_loss;   // 0-d mean cross-entropy over targets (undefined without targets)
  Tensor aux_loss;  // 0-d sum of every layer's balancing losses, coefficients applied
  Tensor loss;      // lm_loss + aux_loss: what training backpropagates
  std::vector<MoeLayerStats> moe_layers;  // one per MoE layer, in layer order
};

class Transformer : public Module {
 public:
  // Initializes normal(0, init_std), output projections (o_proj, down_proj, w2) with
  // init_std / sqrt(2L); deterministic for config.seed.
  explicit Transformer(const ModelConfig& config);

  // tokens (B, T) i64; targets (B, T) i64 or undefined (ignore_index -100 skips a position).
  ModelOutput forward(const Tensor& tokens, const Tensor& targets = Tensor());

  const ModelConfig& config() const { return config_; }
  // MoE layers in layer order (for bias updates and step counts).
  std::vector<MoeLayer*> moe_layers() const;

 private:
  ModelConfig config_;
  std::vector<std::shared_ptr<Module>> blocks_;
};

// Parameter counts and training FLOPs per token: forward + backward = 3x forward, forward
// = 2 x active matmul parameters + causal attention 2 * 2 * T * C / 2 per layer (scores and
// weighted values, half of the T x T entries under the causal mask), LM head included.
struct FlopCount {
  int64_t total_parameters = 0;
  int64_t active_parameters = 0;    // per token: K routed + shared experts, embeddings included
  double training_flops_per_token = 0;
};
FlopCount count_flops(const ModelConfig& config, int64_t seq_len);

}  // namespace sy
