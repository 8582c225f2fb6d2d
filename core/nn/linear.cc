#include "core/nn/linear.h"

#include "core/ops/embedding.h"
#include "core/ops/matmul.h"
#include "core/ops/random_ops.h"

namespace sy {
Linear::Linear(int64_t in_features, int64_t out_features, bool with_bias, double init_std,
               Generator* generator) {
  SY_CHECK(in_features > 0 && out_features > 0, "Linear: features ", in_features, " -> ",
           out_features, " must be positive");
  weight = register_parameter("weight", normal({out_features, in_features}, 0.0, init_std, DType::kF32, generator));
  if (with_bias) bias = register_parameter("bias", Tensor::zeros({out_features}));
}

Tensor Linear::forward(const Tensor& x) const { return linear(x, weight, bias); }

Embedding::Embedding(int64_t num_embeddings, int64_t embedding_dim, double init_std,
                     Generator* generator) {
  SY_CHECK(num_embeddings > 0 && embedding_dim > 0, "Embedding: (", num_embeddings, ", ",
           embedding_dim, ") must be positive");
  weight = register_parameter("weight",
                              normal({num_embeddings, embedding_dim}, 0.0, init_std, DType::kF32, generator));
}

Tensor Embedding::forward(const Tensor& ids) const { return embedding(ids, weight); }

}  // namespace sy
