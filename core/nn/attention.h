// Rotary position embedding and causal self-attention with grouped-query attention, named
// as Hugging Face Llama (q_proj, k_proj, v_proj, o_proj) so checkpoints map one to one.
#pragma once

#include <memory>

#include "core/nn/linear.h"

namespace sy {

// Holds the cos/sin tables for positions 0 .. max_T - 1 as non-persistent buffers:
// derived from (D, theta), so they stay out of state_dict.
class RotaryEmbedding : public Module {
 public:
  RotaryEmbedding(int64_t D, int64_t max_T, double theta = 10000.0);
  // x (B, T, H, D) rotated for positions offset .. offset + T - 1.
  Tensor forward(const Tensor& x, int64_t offset = 0) const;

  Tensor cos;  // (max_T, D/2)
  Tensor sin;  // (max_T, D/2)
};

// One layer's keys and values for incremental decoding. Allocated by the first
// forward_cached for the whole table of max_T positions; positions >= the caller's length
// hold stale values that no query reads.
struct AttentionCache {
  Tensor k;  // (B, Hkv, max_T, D), rotated
  Tensor v;  // (B, Hkv, max_T, D)
};

struct AttentionShape {
  int64_t C = 0;        // model width
  int64_t H = 0;        // query heads; D = C / H
  int64_t Hkv = 0;      // key/value heads (GQA), divides H
  int64_t max_T = 0;    // longest sequence the rotary tables cover
  double rope_theta = 10000.0;
};

// x (B, T, C) -> (B, T, C): causal attention, each position sees itself and earlier ones.
class CausalSelfAttention : public Module {
 public:
  explicit CausalSelfAttention(const AttentionShape& shape, double init_std = 0.02,
                               Generator* generator = nullptr);
  Tensor forward(const Tensor& x) const;
  // x (B, T_new, C) at positions position .. position + T_new - 1, after `position` earlier
  // tokens whose keys and values are in `cache` -> (B, T_new, C). Each new query sees every
  // cached key and the new ones up to its own position; the new keys and values are written
  // into the cache. Computed as plain matmuls and a masked softmax, without autograd (for
  // generation; forward() is the training path).
  Tensor forward_cached(const Tensor& x, AttentionCache& cache, int64_t position) const;

  AttentionShape shape;
  int64_t D;
  std::shared_ptr<Linear> q_proj;  // weight (H*D, C)
  std::shared_ptr<Linear> k_proj;  // weight (Hkv*D, C)
  std::shared_ptr<Linear> v_proj;  // weight (Hkv*D, C)
  std::shared_ptr<Linear> o_proj;  // weight (C, H*D)
  std::shared_ptr<RotaryEmbedding> rotary_emb;
};

}  // namespace sy
