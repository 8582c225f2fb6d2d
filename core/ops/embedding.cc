// embedding: a row lookup whose backward scatter-adds the output gradient into (V, C).
#include "core/ops/embedding.h"

#include "core/autograd/node.h"
#include "core/kernels/cpu/attention_kernels.h"
#include "core/ops/dispatch.h"

namespace sy {

Tensor embedding(const Tensor& ids, const Tensor& weight) {
  require_cpu("embedding", ids);
  require_cpu("embedding", weight);
  SY_CHECK(ids.dtype() == DType::kI32 || ids.dtype() == DType::kI64,
           "embedding: ids must be i32 or i64, got ", dtype_name(ids.dtype()));
  SY_CHECK(weight.dim() == 2, "embedding: weight must be (V, C), got ", ShapeString(weight.shape()));
  const int64_t C = weight.size(1);
  Shape out_shape = ids.shape();
  out_shape.push_back(C);
  Tensor flat_ids = ids.contiguous();
  Tensor out = Tensor::empty({ids.numel(), C}, weight.dtype());
  kernels::cpu::embedding_forward(flat_ids, weight.detach().contiguous(), out);
  out = out.view(out_shape);
  // Only the ids are needed: the gradient does not depend on the weight's values.
  record("EmbeddingBackward", {weight}, {out},
         [flat_ids, weight_shape = weight.shape(), dtype = weight.dtype()](const std::vector<Tensor>& g) {
           // bf16/f16 gradients accumulate in f32: many rows may hit one id.
           const DType accumulate = dtype == DType::kF64 ? DType::kF64 : DType::kF32;
           Tensor grad_out = g[0].to(accumulate).contiguous().reshape({flat_ids.numel(), weight_shape[1]});
           Tensor grad_weight = Tensor::empty(weight_shape, accumulate);
           kernels::cpu::embedding_backward(flat_ids, grad_out, grad_weight);
           return std::vector<Tensor>{grad_weight.to(dtype)};
         });
  return out;
}

}  // namespace sy
