#include "core/nn/attention.h"

#include "core/ops/attention.h"
#include "core/ops/rotary.h"

namespace sy {

RotaryEmbedding::RotaryEmbedding(int64_t D, int64_t max_T, double theta) {
  auto [cos_table, sin_table] = rotary_tables(max_T, D, theta);
  cos = register_buffer("cos", cos_table, /*persistent=*/false);
  sin = register_buffer("sin", sin_table, /*persistent=*/false);
}

Tensor RotaryEmbedding::forward(const Tensor& x, int64_t offset) const {
  SY_CHECK(x.dim() == 4, "RotaryEmbedding: x must be (B, T, H, D), got ", ShapeString(x.shape()));
  int64_t T = x.size(1);
  SY_CHECK(offset >= 0 && offset + T <= cos.size(0), "RotaryEmbedding: positions [", offset, ", ",
           offset + T, ") exceed the ", cos.size(0), " positions of the tables");
  return rotary_embedding(x, cos.narrow(0, offset, T), sin.narrow(0, offset, T));
}

CausalSelfAttention::CausalSelfAttention(const AttentionShape& shape, double init_std,
                                         Generator* generator)
    : shape(shape) {
  SY_CHECK(shape.C > 0 && shape.H > 0 && shape.C % shape.H == 0 && (shape.C / shape.H) % 2 == 0,
           "CausalSelfAttention: C ", shape.C, " must split into H ", shape.H,
           " heads of even width");
  SY_CHECK(shape.Hkv > 0 && shape.H % shape.Hkv == 0, "CausalSelfAttention: Hkv ", shape.Hkv,
           " must divide H ", shape.H);
  D = shape.C / shape.H;
  q_proj = register_module("q_proj", std::make_shared<Linear>(shape.C, shape.H * D, false, init_std, generator));
  k_proj = register_module("k_proj", std::make_shared<Linear>(shape.C, shape.Hkv * D, false, init_std, generator));
  v_proj = register_module("v_proj", std::make_shared<Linear>(shape.C, shape.Hkv * D, false, init_std, generator));
  o_proj = register_module("o_proj", std::make_shared<Linear>(shape.H * D, shape.C, false, init_std, generator));
  rotary_emb = register_module("rotary_emb", std::make_shared<RotaryEmbedding>(D, shape.max_T, shape.rope_theta));
}

Tensor CausalSelfAttention::forward(const Tensor& x) const {
  SY_CHECK(x.dim() == 3 && x.size(2) == shape.C, "CausalSelfAttention: x must be (B, T, ",
           shape.C, "), got ", ShapeString(x.shape()));
  int64_t B = x.size(0), T = x.size(1);
  Tensor q = rotary_emb->forward(q_proj->forward(x).view({B, T, shape.H, D}));    // (B, T, H, D)
  Tensor k = rotary_emb->forward(k_proj->forward(x).view({B, T, shape.Hkv, D}));  // (B, T, Hkv, D)
  Tensor v = v_proj->forward(x).view({B, T, shape.Hkv, D});                       // (B, T, Hkv, D)
  Tensor out = scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                            /*causal=*/true);  // (B, H, T, D)
  return o_proj->forward(out.transpose(1, 2).reshape({B, T, shape.H * D}));
}

}  // namespace sy
