// Rotary position embedding (RoPE, Su et al. 2021) in the rotate-half convention of
// GPT-NeoX and Hugging Face Llama: dims i and i + D/2 form a pair rotated by angle
// position * theta^(-2i/D).
#pragma once

#include <utility>

#include "core/tensor.h"

namespace sy {

// cos and sin tables, each (T, D/2), for positions offset .. offset + T - 1 (f32).
std::pair<Tensor, Tensor> rotary_tables(int64_t T, int64_t D, double theta = 10000.0, int64_t offset = 0);
// x (B, T, H, D) rotated; cos, sin (T, D/2). Backward rotates by the negative angle.
Tensor rotary_embedding(const Tensor& x, const Tensor& cos, const Tensor& sin);

}  // namespace sy
