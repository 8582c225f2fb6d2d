// Linear and Embedding: the two weight-table modules, initialized N(0, init_std^2) from a
// Philox generator (null: the default one), as Hugging Face's initializer_range.
#pragma once

#include "core/nn/module.h"
#include "core/random.h"

namespace sy {

// y = x @ weight^T + bias, x (..., Cin) -> (..., Cout).
class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = false, double init_std = 0.02,
         Generator* generator = nullptr);
  Tensor forward(const Tensor& x) const;

  Tensor weight;  // (Cout, Cin)
  Tensor bias;    // (Cout), or undefined
};

// ids (...) of i32/i64 -> (..., C).
class Embedding : public Module {
 public:
  Embedding(int64_t num_embeddings, int64_t embedding_dim, double init_std = 0.02,
            Generator* generator = nullptr);
  Tensor forward(const Tensor& ids) const;

  Tensor weight;  // (V, C)
};

}  // namespace sy
