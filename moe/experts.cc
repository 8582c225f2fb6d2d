// GroupedExperts: the routed SwiGLU experts as two grouped GEMMs over the rows each expert
// received. Parameters stay f32; the compute dtype follows the input.
#include "moe/experts.h"

#include "core/ops/ops.h"

namespace sy {

Tensor grouped_swiglu(const Tensor& x, const Tensor& w1, const Tensor& w2,
                      const std::vector<int64_t>& tokens_per_expert) {
  SY_CHECK(w1.dim() == 3 && w2.dim() == 3 && w1.size(2) == 2 * w2.size(1) && w2.size(2) == w1.size(1),
           "grouped_swiglu: w1 ", ShapeString(w1.shape()), " and w2 ", ShapeString(w2.shape()),
           " (expected (E, C, 2F) and (E, F, C))");
  const int64_t F = w2.size(1);
  Tensor h = grouped_matmul(x, w1, tokens_per_expert);  // (M, 2F)
  Tensor activated = silu(h.narrow(1, 0, F)) * h.narrow(1, F, F);
  return grouped_matmul(activated, w2, tokens_per_expert);
}

GroupedExperts::GroupedExperts(int64_t E, int64_t C, int64_t F, double init_std, double output_std,
                               Generator* generator, int64_t first_local, int64_t local_experts) {
  SY_CHECK(E > 0 && C > 0 && F > 0, "GroupedExperts: E ", E, ", C ", C, ", F ", F, " must be positive");
  if (local_experts == 0) local_experts = E;
  SY_CHECK(first_local >= 0 && local_experts > 0 && first_local + local_experts <= E, "GroupedExperts: experts [",
           first_local, ", ", first_local + local_experts, ") of E = ", E);
  auto local = [&](const Tensor& all) {
    return local_experts == E ? all : all.narrow(0, first_local, local_experts).clone();
  };
  w1_ = register_parameter("w1", local(normal({E, C, 2 * F}, 0.0, init_std, DType::kF32, generator)));
  w2_ = register_parameter("w2", local(normal({E, F, C}, 0.0, output_std, DType::kF32, generator)));
}

Tensor GroupedExperts::forward(const Tensor& x, const std::vector<int64_t>& tokens_per_expert) const {
  SY_CHECK(x.dim() == 2 && x.size(1) == w1_.size(1), "GroupedExperts: x ", ShapeString(x.shape()),
           " for w1 ", ShapeString(w1_.shape()), " (expected x (M, C))");
  const Tensor w1 = w1_.dtype() == x.dtype() ? w1_ : w1_.to(x.dtype());
  const Tensor w2 = w2_.dtype() == x.dtype() ? w2_ : w2_.to(x.dtype());
  return grouped_swiglu(x, w1, w2, tokens_per_expert);
}

}  // namespace sy
