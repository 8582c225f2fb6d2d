// The CPU kernels of the attention block's ops: embedding lookup, rotary position embedding,
// and block-wise (flash-style) scaled-dot-product attention. Every tensor here is contiguous;
// the ops check shapes and dtypes. Gradients are written (=), never accumulated.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace sy::kernels::cpu {

// out (N, C) = weight[ids] for ids (N) i32/i64, weight (V, C) of any dtype. Every id must
// lie in [0, V) (checked, naming the id).
void embedding_forward(const Tensor& ids, const Tensor& weight, Tensor& out);
// grad_weight (V, C) = scatter-add of grad_out (N, C) rows at ids (f32/f64). Deterministic:
// threads own column ranges, and each walks the rows in order.
void embedding_backward(const Tensor& ids, const Tensor& grad_out, Tensor& grad_weight);

// cos, sin (T, D/2) f32 of angle (offset + t) * theta^(-2i/D).
void rotary_tables(int64_t offset, double theta, Tensor& cos, Tensor& sin);
// out (B, T, H, D) = x rotated pairwise (i, i + D/2) by the angles of cos, sin (T, D/2);
// the tables are f32 for f32/bf16/f16 x and f64 for f64 x. sin_sign -1 rotates backwards
// (the gradient).
void rotary(const Tensor& x, const Tensor& cos, const Tensor& sin, double sin_sign, Tensor& out);

// The flash-attention block size (query rows and key rows per block) used by default for
// head dim D: small enough that each block product stays on one core inside OpenBLAS.
int64_t attention_block_size(int64_t D);
// out (B, H, T, D) = softmax(scale * q k^T [+ causal mask]) v and lse (B, H, T), the
// log-sum-exp of each score row; q (B, H, T, D), k, v (B, Hkv, T, D); f32 or f64.
void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale,
                       int64_t block, Tensor& out, Tensor& lse);
// grad_q, grad_k, grad_v of the attention above, recomputing each block's probabilities
// from q, k and lse; out and grad_out (B, H, T, D).
void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                        const Tensor& lse, const Tensor& grad_out, bool causal, double scale,
                        int64_t block, Tensor& grad_q, Tensor& grad_k, Tensor& grad_v);

}  // namespace sy::kernels::cpu
