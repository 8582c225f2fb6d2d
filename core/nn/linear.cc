#include "core/nn/linear.h"

#include "core/ops/embedding.h"
#include "core/ops/matmul.h"
#include "core/ops/random_ops.h"

namespace sy {
namespace {

Tensor normal_parameter(const Shape& shape, double std, Generator* generator) {
  Tensor weight = Tensor::empty(shape);
  normal_(weight, 0.0, std, generator);
  return weight;
}

}  // namespace

Linear::Linear(int64_t in_features, int64_t out_features, bool with_bias, double init_std,
               Generator* generator) {
  SY_CHECK(in_features > 0 && out_features > 0, "Linear: features ", in_features, " -> ",
           out_features, " must be positive");
  weight = register_parameter("weight", normal_parameter({out_features, in_features}, init_std, generator));
  if (with_bias) bias = register_parameter("bias", Tensor::zeros({out_features}));
}

Tensor Linear::forward(const Tensor& x) const { return linear(x, weight, bias); }

Embedding::Embedding(int64_t num_embeddings, int64_t embedding_dim, double init_std,
                     Generator* generator) {
  SY_CHECK(num_embeddings > 0 && embedding_dim > 0, "Embedding: (", num_embeddings, ", ",
           embedding_dim, ") must be positive");
  weight = register_parameter("weight",
                              normal_parameter({num_embeddings, embedding_dim}, init_std, generator));
}

Tensor Embedding::forward(const Tensor& ids) const { return embedding(ids, weight); }

}  // namespace sy
