// scaled_dot_product_attention: argument checks, f32 compute for bf16/f16, and the backward
// node that recomputes probabilities block by block from the saved log-sum-exp.
#include "core/ops/attention.h"

#include <cmath>

#include "core/autograd/node.h"
#include "core/kernels/cpu/attention_kernels.h"
#include "core/ops/dispatch.h"

namespace sy {

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal,
                                    double scale) {
  return detail::scaled_dot_product_attention(q, k, v, causal, scale, 0);
}

namespace detail {

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal,
                                    double scale, int64_t block) {
  require_cpu("scaled_dot_product_attention", q);
  require_cpu("scaled_dot_product_attention", k);
  require_cpu("scaled_dot_product_attention", v);
  SY_CHECK(q.dim() == 4 && k.dim() == 4 && k.shape() == v.shape() && q.size(0) == k.size(0) &&
               q.size(2) == k.size(2) && q.size(3) == k.size(3) && k.size(1) > 0 && q.size(1) % k.size(1) == 0,
           "scaled_dot_product_attention: q ", ShapeString(q.shape()), " k ", ShapeString(k.shape()), " v ",
           ShapeString(v.shape()), " (expected q (B, H, T, D), k and v (B, Hkv, T, D), H % Hkv == 0)");
  SY_CHECK(is_floating(q.dtype()) && q.dtype() == k.dtype() && q.dtype() == v.dtype(),
           "scaled_dot_product_attention: dtypes ", dtype_name(q.dtype()), ", ", dtype_name(k.dtype()), ", ",
           dtype_name(v.dtype()), " (expected one floating dtype)");
  SY_CHECK(block >= 0, "scaled_dot_product_attention: block size ", block);
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3);
  if (scale == 0.0) scale = 1.0 / std::sqrt(static_cast<double>(D));
  if (block == 0) block = kernels::cpu::attention_block_size(D);
  // bf16/f16 compute in f32, as every CPU kernel does.
  const DType compute = q.dtype() == DType::kF64 ? DType::kF64 : DType::kF32;
  auto operand = [compute](const Tensor& x) { return x.detach().to(compute).contiguous(); };
  Tensor out = Tensor::empty(q.shape(), compute);
  Tensor lse = Tensor::empty({B, H, T}, compute);
  kernels::cpu::attention_forward(operand(q), operand(k), operand(v), causal, scale, block, out, lse);
  Tensor result = q.dtype() == compute ? out : out.to(q.dtype());
  record("ScaledDotProductAttentionBackward", {q, k, v}, {result},
         [saved_q = SavedTensor(q), saved_k = SavedTensor(k), saved_v = SavedTensor(v),
          saved_out = SavedTensor(out.detach()), lse, causal, scale, block, operand,
          dtype = q.dtype()](const std::vector<Tensor>& g) {
           Tensor q = operand(saved_q.get()), k = operand(saved_k.get()), v = operand(saved_v.get());
           Tensor grad_q = Tensor::empty(q.shape(), q.dtype());
           Tensor grad_k = Tensor::empty(k.shape(), k.dtype());
           Tensor grad_v = Tensor::empty(v.shape(), v.dtype());
           kernels::cpu::attention_backward(q, k, v, saved_out.get(), lse, operand(g[0]), causal, scale, block,
                                            grad_q, grad_k, grad_v);
           return std::vector<Tensor>{grad_q.to(dtype), grad_k.to(dtype), grad_v.to(dtype)};
         });
  return result;
}

}  // namespace detail
}  // namespace sy
