// Routed experts as stacked tensors run by one grouped GEMM over variable row counts, and
// the SwiGLU FFN they share with the shared experts. w1 fuses gate and up: w1[e][:, :F] is
// the gate projection, w1[e][:, F:] the up projection.
#pragma once

#include <vector>

#include "core/nn/module.h"
#include "core/random.h"
#include "core/tensor.h"

namespace sy {

// The experts' math on explicit weights: x (M, C) in expert order, w1 (E, C, 2F), w2 (E, F, C)
// of x's dtype -> (M, C) with out_e = (silu(x_e w1_e[:, :F]) * (x_e w1_e[:, F:])) w2_e.
Tensor grouped_swiglu(const Tensor& x, const Tensor& w1, const Tensor& w2,
                      const std::vector<int64_t>& tokens_per_expert);

class GroupedExperts : public Module {
 public:
  // Initial weights from `generator` (null: the default generator). Under expert parallelism
  // the module holds only experts [first_local, first_local + local_experts) of the E: it
  // draws all E (so the generator advances as on one rank) and keeps its slice, giving each
  // expert the values it has in the one-rank model. local_experts 0: all E.
  GroupedExperts(int64_t E, int64_t C, int64_t F, double init_std, double output_std,
                 Generator* generator = nullptr, int64_t first_local = 0, int64_t local_experts = 0);

  // x (M, C) in local-expert order, tokens_per_expert (local experts) summing to M -> (M, C):
  // silu(x W_gate) * (x W_up) @ w2 per expert.
  Tensor forward(const Tensor& x, const std::vector<int64_t>& tokens_per_expert) const;

  const Tensor& w1() const { return w1_; }
  const Tensor& w2() const { return w2_; }

 private:
  Tensor w1_;  // (E / EP, C, 2F): the local experts
  Tensor w2_;  // (E / EP, F, C)
};

}  // namespace sy
