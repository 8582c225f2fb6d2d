#include "core/nn/attention.h"

#include <cmath>
#include <limits>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/ops/attention.h"
#include "core/ops/elementwise.h"
#include "core/ops/matmul.h"
#include "core/ops/rotary.h"
#include "core/ops/softmax.h"

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

Tensor CausalSelfAttention::forward_cached(const Tensor& x, AttentionCache& cache, int64_t position) const {
  SY_CHECK(x.dim() == 3 && x.size(2) == shape.C, "CausalSelfAttention: x must be (B, T, ",
           shape.C, "), got ", ShapeString(x.shape()));
  const int64_t B = x.size(0), T = x.size(1), Hkv = shape.Hkv, G = shape.H / Hkv, L = position + T;
  SY_CHECK(position >= 0 && L <= shape.max_T, "CausalSelfAttention::forward_cached: positions [",
           position, ", ", L, ") exceed the ", shape.max_T, " positions of the cache");
  NoGradGuard no_grad;
  Tensor q = rotary_emb->forward(q_proj->forward(x).view({B, T, shape.H, D}), position);  // (B, T, H, D)
  Tensor k = rotary_emb->forward(k_proj->forward(x).view({B, T, Hkv, D}), position);      // (B, T, Hkv, D)
  Tensor v = v_proj->forward(x).view({B, T, Hkv, D});                                     // (B, T, Hkv, D)
  const Shape cache_shape{B, Hkv, shape.max_T, D};
  if (!cache.k.defined()) {
    cache.k = Tensor::zeros(cache_shape, k.dtype(), k.device());
    cache.v = Tensor::zeros(cache_shape, v.dtype(), v.device());
  }
  SY_CHECK(cache.k.shape() == cache_shape && cache.v.shape() == cache_shape,
           "CausalSelfAttention::forward_cached: cache ", ShapeString(cache.k.shape()), ", expected ",
           ShapeString(cache_shape));
  cache.k.narrow(2, position, T).copy_(k.transpose(1, 2));
  cache.v.narrow(2, position, T).copy_(v.transpose(1, 2));
  const Tensor keys = cache.k.narrow(2, 0, L);    // (B, Hkv, L, D)
  const Tensor values = cache.v.narrow(2, 0, L);  // (B, Hkv, L, D)

  // Query head h reads kv head h / G, so the G query heads of a kv head stack as G * T rows.
  Tensor queries = q.transpose(1, 2).reshape({B, Hkv, G * T, D});
  Tensor scores = matmul(queries, keys.transpose(2, 3)) * (1.0 / std::sqrt(static_cast<double>(D)));
  // New token i sits at position + i and sees the keys at positions 0 .. position + i.
  std::vector<uint8_t> future(static_cast<size_t>(T * L));
  for (int64_t i = 0; i < T; ++i) {
    for (int64_t j = 0; j < L; ++j) future[static_cast<size_t>(i * L + j)] = j > position + i;
  }
  Tensor mask = Tensor::from_vector(future, {T, L}, DType::kBool).to(x.device());
  scores = masked_fill(scores.view({B, Hkv, G, T, L}), mask, -std::numeric_limits<double>::infinity());
  Tensor out = matmul(softmax(scores, -1).view({B, Hkv, G * T, L}), values);  // (B, Hkv, G*T, D)
  return o_proj->forward(out.view({B, shape.H, T, D}).transpose(1, 2).reshape({B, T, shape.H * D}));
}

}  // namespace sy
