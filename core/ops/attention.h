// Causal scaled-dot-product attention with grouped-query attention (GQA).
#pragma once

#include "core/tensor.h"

namespace sy {

// q (B, H, T, D), k and v (B, Hkv, T, D) with H % Hkv == 0 (query head h reads kv head
// h / (H / Hkv)) -> (B, H, T, D). scale 0 means 1/sqrt(D). Computed block by block with an
// online softmax; backward keeps only the per-row log-sum-exp and recomputes each block's
// probabilities, so no T x T matrix is ever stored.
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    bool causal = true, double scale = 0.0);

namespace detail {
// The same with `block` query rows and key rows per block (0: the kernel's default for D),
// so tests can cover many blocks and ragged last blocks on small T.
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal,
                                    double scale, int64_t block);
}  // namespace detail

}  // namespace sy
