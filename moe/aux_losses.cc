// Balancing losses: load balancing at micro-batch, sequence and global scope, and the z-loss.
// Counts come from the (non-differentiable) selection; the gradient reaches the router
// through the mean scores P and the logits.
#include "moe/aux_losses.h"

#include "core/autograd/grad_mode.h"
#include "core/ops/ops.h"

namespace sy {

namespace {

void check_routing(const char* what, const Tensor& scores, const Tensor& topk_indices) {
  SY_CHECK(scores.dim() == 2 && is_floating(scores.dtype()), what, ": scores ", ShapeString(scores.shape()),
           ", expected floating (N, E)");
  SY_CHECK(topk_indices.dim() == 2 && topk_indices.size(0) == scores.size(0) && !is_floating(topk_indices.dtype()),
           what, ": topk_indices ", ShapeString(topk_indices.shape()), ", expected integer (N = ", scores.size(0),
           ", K)");
}

// E * sum_i f_i P_i given f (E) without gradient and P (E).
Tensor balance(const Tensor& fractions, const Tensor& mean_scores) {
  return sum(fractions * mean_scores) * static_cast<double>(mean_scores.size(-1));
}

}  // namespace

Tensor count_tokens_per_expert(const Tensor& topk_indices, int64_t E) {
  SY_CHECK(!is_floating(topk_indices.dtype()), "count_tokens_per_expert: indices must be integer");
  Tensor counts = bincount(topk_indices.reshape({-1}), E);
  SY_CHECK(counts.shape() == Shape{E}, "count_tokens_per_expert: an index of ",
           ShapeString(topk_indices.shape()), " is >= E = ", E);
  return counts;
}

Tensor load_balancing_loss(const Tensor& scores, const Tensor& topk_indices) {
  check_routing("load_balancing_loss", scores, topk_indices);
  const int64_t N = scores.size(0), E = scores.size(1), K = topk_indices.size(1);
  SY_CHECK(N > 0, "load_balancing_loss: no tokens");
  Tensor fractions = count_tokens_per_expert(topk_indices, E).to(scores.dtype()) / static_cast<double>(N * K);
  return balance(fractions, mean(scores, {0}));
}

Tensor sequence_load_balancing_loss(const Tensor& scores, const Tensor& topk_indices, int64_t B) {
  check_routing("sequence_load_balancing_loss", scores, topk_indices);
  const int64_t E = scores.size(1), K = topk_indices.size(1);
  SY_CHECK(B > 0 && scores.size(0) % B == 0 && scores.size(0) > 0, "sequence_load_balancing_loss: scores ",
           ShapeString(scores.shape()), " do not split into B = ", B, " sequences");
  const int64_t T = scores.size(0) / B;
  Tensor fractions;  // (B, E)
  {
    NoGradGuard no_grad;
    Tensor slots = topk_indices.reshape({B, T * K}).to(DType::kI64);
    Tensor ones = Tensor::ones({B, T * K}, scores.dtype(), scores.device());
    Tensor counts = scatter_add(Tensor::zeros({B, E}, scores.dtype(), scores.device()), 1, slots, ones);
    fractions = counts / static_cast<double>(T * K);
  }
  Tensor mean_scores = mean(scores.reshape({B, T, E}), {1});  // (B, E)
  return sum(fractions * mean_scores) * (static_cast<double>(E) / static_cast<double>(B));
}

Tensor global_load_balancing_loss(const Tensor& scores, const Tensor& tokens_per_expert, int64_t total_slots) {
  SY_CHECK(scores.dim() == 2 && is_floating(scores.dtype()) && scores.size(0) > 0,
           "global_load_balancing_loss: scores ", ShapeString(scores.shape()), ", expected floating (N, E)");
  const int64_t E = scores.size(1);
  SY_CHECK(tokens_per_expert.shape() == Shape{E}, "global_load_balancing_loss: tokens_per_expert ",
           ShapeString(tokens_per_expert.shape()), ", expected (E = ", E, ")");
  SY_CHECK(total_slots > 0, "global_load_balancing_loss: total_slots ", total_slots, " must be positive");
  Tensor fractions = tokens_per_expert.detach().to(scores.device()).to(scores.dtype()) /
                     static_cast<double>(total_slots);
  return balance(fractions, mean(scores, {0}));
}

Tensor router_z_loss(const Tensor& logits) {
  SY_CHECK(logits.dim() == 2 && is_floating(logits.dtype()) && logits.size(0) > 0, "router_z_loss: logits ",
           ShapeString(logits.shape()), ", expected floating (N, E)");
  // logsumexp with the row max taken out (a constant shift: no gradient needed through it).
  Tensor row_max = max(logits, -1, true).detach();                               // (N, 1)
  Tensor lse = log(sum(exp(logits - row_max), {-1}, true)) + row_max;            // (N, 1)
  return mean(lse * lse);
}

}  // namespace sy
