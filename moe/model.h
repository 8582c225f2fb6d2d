// The decoder-only transformer our users pretrain: token embedding, L pre-norm blocks
// (RMSNorm, causal self-attention with RoPE and GQA, then a dense SwiGLU FFN or an MoE
// layer), final RMSNorm, LM head (tied or untied), cross-entropy. Parameter names are the
// Hugging Face Llama / Qwen2-MoE ones without the `model.` prefix (moe/README.md).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/nn/attention.h"
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

// Every layer's keys and values for generation: Transformer::forward_cached fills it. Empty
// until the first call, which allocates each layer's (B, Hkv, max_seq_len, D) tables.
struct KvCache {
  std::vector<AttentionCache> layers;  // one per transformer layer
  int64_t length = 0;                  // tokens cached: the next token sits at this position

  void clear() {
    layers.clear();
    length = 0;
  }
};

class TransformerBlock;
class Embedding;
class Linear;
class RMSNorm;

// A parameter this rank holds only a block of (the experts of an EP rank): its global
// shape and the offsets of the local block in it. Checkpoints record the box.
struct ParameterShard {
  std::string name;
  std::vector<int64_t> global_shape;
  std::vector<int64_t> offsets;
};

// Routed-expert parameters (`layers.N.mlp.experts.w1` / `.w2`): reduced over expert-DP,
// split over EP. Everything else is replicated on every rank.
bool is_expert_parameter(const std::string& name);

class Transformer : public Module {
 public:
  // Initializes every weight matrix normal(0, init_std), the output projections (o_proj,
  // down_proj, experts.w2) normal(0, init_std / sqrt(2L)), norms to ones and the expert
  // bias to zeros. One Generator seeded with config.seed draws every parameter in
  // named_parameters() order, so a config always gives the same model.
  // Under EP (parallel.expert of size > 1) each MoE layer holds only this rank's experts, with
  // exactly the values of the same experts of the one-rank model.
  explicit Transformer(const ModelConfig& config, const MoeParallel& parallel = MoeParallel());

  // tokens (B, T) i64; targets (B, T) i64 or undefined (ignore_index -100 skips a position).
  ModelOutput forward(const Tensor& tokens, const Tensor& targets = Tensor());

  // Incremental decoding: tokens (B, T_new) follow the cache->length tokens already cached;
  // returns their logits (B, T_new, V), equal to the full sequence's forward at those
  // positions, and appends their keys and values. No autograd. MoE layers run as configured
  // (use eval() for no router jitter): routing is per token, but a capacity factor applies
  // to the T_new tokens of each call, so prefills may drop where decoding one token cannot.
  // The sequence may not grow beyond max_seq_len.
  Tensor forward_cached(const Tensor& tokens, KvCache* cache);

  const ModelConfig& config() const { return config_; }
  // Activation recomputation in training (TransformerBlock::forward says what is recomputed).
  void set_recompute(bool recompute) { recompute_ = recompute; }
  // MoE layers in layer order (for bias updates and step counts).
  std::vector<MoeLayer*> moe_layers() const;
  // The parameters this rank holds only a block of (empty without EP).
  std::vector<ParameterShard> parameter_shards() const;

 private:
  ModelConfig config_;
  std::shared_ptr<Embedding> embed_tokens_;
  std::shared_ptr<ModuleList> layers_;  // of TransformerBlock
  std::shared_ptr<RMSNorm> norm_;
  std::shared_ptr<Linear> lm_head_;  // null when tie_embeddings
  bool recompute_ = false;
  int64_t expert_ranks_ = 1;  // EP group size
  int64_t expert_rank_ = 0;   // this rank in it: owns experts [rank * E / EP, (rank + 1) * E / EP)
};

// Parameter counts and training FLOPs per token for sequences of T = seq_len tokens.
//   total_parameters:  every parameter (= Transformer(config).num_parameters(); buffers such
//                      as the expert bias are not parameters).
//   active_parameters: the parameters one token uses: total minus the E - K routed experts it
//                      skips in each MoE layer (embeddings, norms, router, shared experts kept).
//   matmul parameters: the active weights a token multiplies with: q/k/v/o projections, the
//                      dense FFN or router + K routed experts + shared experts (+ shared gate),
//                      and the LM head (V x C, counted also when tied). The embedding lookup and
//                      the norms are not matmuls.
//   forward FLOPs per token = 2 * matmul parameters
//                           + per layer 2 * 2 * T * C / 2: Q K^T and the attention-weighted V,
//                             2 * T * C each over all T keys (H heads of D, H * D = C, also with
//                             GQA), halved because the causal mask leaves half the T x T entries.
//   training_flops_per_token = 3 * forward (the backward costs two forwards): 6 * matmul
//                              parameters + 6 * T * C per layer.
struct FlopCount {
  int64_t total_parameters = 0;
  int64_t active_parameters = 0;
  int64_t matmul_parameters = 0;
  double forward_flops_per_token = 0;
  double training_flops_per_token = 0;
};
FlopCount count_flops(const ModelConfig& config, int64_t seq_len);

}  // namespace sy
