// MoeLayer: route the flattened tokens, plan their dispatch over all E experts, run them
// through the (possibly remote) experts with moe/dispatcher.h while the shared experts
// compute, add the shared experts' output; and the layer's balancing losses. The balancing losses count every routed slot (before any capacity
// drop, as Megatron-Core); stats.tokens_per_expert reports the slots the experts ran.
#include "moe/moe_layer.h"

#include <numeric>

#include "core/autograd/grad_mode.h"
#include "core/nn/nn.h"
#include "core/ops/ops.h"
#include "moe/aux_losses.h"
#include "moe/dispatch_local.h"
#include "moe/dispatcher.h"
#include "moe/experts.h"

namespace sy {

MoeLayer::MoeLayer(const MoeConfig& config, int64_t hidden_size, double init_std, double output_std,
                   Generator* generator, const MoeParallel& parallel)
    : config_(config), parallel_(parallel) {
  SY_CHECK(config.num_experts > 0, "MoeLayer: num_experts ", config.num_experts, " must be positive");
  SY_CHECK(parallel.overlap_chunks >= 1, "MoeLayer: overlap_chunks ", parallel.overlap_chunks, " must be >= 1");
  const int64_t ranks = parallel.expert ? parallel.expert->size() : 1;
  const int64_t rank = parallel.expert ? parallel.expert->rank() : 0;
  SY_CHECK(config.num_experts % ranks == 0, "MoeLayer: ", config.num_experts, " experts over an EP group of ", ranks);
  const int64_t local_experts = config.num_experts / ranks;
  router_ = register_module("gate", std::make_shared<Router>(config, hidden_size, init_std, generator));
  experts_ = register_module(
      "experts", std::make_shared<GroupedExperts>(config.num_experts, hidden_size, config.expert_ffn_size, init_std,
                                                  output_std, generator, rank * local_experts, local_experts));
  if (config.num_shared_experts > 0) {
    shared_experts_ = register_module(
        "shared_experts",
        std::make_shared<SwiGLU>(hidden_size, config.num_shared_experts * config.shared_expert_ffn_size, init_std, generator));
    // The down projection is an output projection: it takes the scaled std.
    NoGradGuard no_grad;
    normal_(shared_experts_->down_proj->weight, 0.0, output_std, generator);
  }
  if (config.shared_expert_gate) {
    SY_CHECK(shared_experts_ != nullptr, "MoeLayer: shared_expert_gate without shared experts");
    shared_expert_gate_ = register_module("shared_expert_gate", std::make_shared<Linear>(hidden_size, 1, false, init_std, generator));
  }
  reset_step_counts();
}

void MoeLayer::reset_step_counts() {
  step_counts_ = Tensor::zeros({config_.num_experts}, DType::kI64);
  step_slots_ = 0;
}

Tensor MoeLayer::forward(const Tensor& x, MoeLayerStats* stats) {
  SY_CHECK(x.dim() == 3, "MoeLayer: x ", ShapeString(x.shape()), " (expected (B, T, C))");
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2), N = B * T, E = config_.num_experts;
  const Tensor flat = x.reshape({N, C});

  RoutingOutput routing = router_->forward(flat);
  const DispatchPlan plan = plan_dispatch(routing.topk_indices, routing.topk_weights, E, config_.capacity_factor,
                                          config_.drop_policy, config_.pad_to_capacity);
  // The shared experts compute while the first chunk of routed rows travels.
  Tensor shared;
  DispatchOptions options{.group = parallel_.expert, .num_experts = E, .overlap_chunks = parallel_.overlap_chunks,
                          .while_in_flight = nullptr, .timings = timings_};
  if (shared_experts_) {
    options.while_in_flight = [&] {
      shared = shared_experts_->forward(flat);
      if (shared_expert_gate_) shared = sigmoid(shared_expert_gate_->forward(flat)) * shared;
    };
  }
  Tensor out = dispatch_to_experts(flat, plan, routing.topk_weights, *experts_, options);
  if (shared.defined()) out = out + shared;

  // Routed slots of this micro-batch per expert; the step's sum grows in training only, so
  // evaluation forwards leave the bias update and the global loss of the step untouched.
  // In training the counts are first summed over the balance group (every rank calls this
  // forward alike), so every rank holds the job-wide step counts.
  Tensor routed_counts = count_tokens_per_expert(routing.topk_indices, E);
  if (is_training() && parallel_.balance && parallel_.balance->size() > 1) {
    routed_counts = routed_counts.contiguous().clone();
    parallel_.balance->all_reduce(routed_counts, ReduceOp::kSum);
  }
  Tensor step_counts = step_counts_.to(routed_counts.device()) + routed_counts;
  const std::vector<int64_t> routed = routed_counts.to(Device::CPU()).to_vector<int64_t>();
  const int64_t step_slots = step_slots_ + std::accumulate(routed.begin(), routed.end(), int64_t{0});
  if (is_training()) {
    step_counts_ = step_counts;
    step_slots_ = step_slots;
  }
  if (stats != nullptr) {
    *stats = MoeLayerStats();
    // The losses average over this rank's tokens: a rank with none (it still joins the
    // exchanges and the count all-reduce) contributes no loss terms.
    const bool has_tokens = N > 0;
    if (has_tokens && config_.load_balance_coeff > 0) {
      stats->load_balance_loss = load_balancing_loss(routing.scores, routing.topk_indices) * config_.load_balance_coeff;
    }
    if (has_tokens && config_.sequence_load_balance_coeff > 0) {
      stats->sequence_load_balance_loss =
          sequence_load_balancing_loss(routing.scores, routing.topk_indices, B) * config_.sequence_load_balance_coeff;
    }
    if (has_tokens && config_.global_load_balance_coeff > 0) {
      stats->global_load_balance_loss =
          global_load_balancing_loss(routing.scores, step_counts, step_slots) * config_.global_load_balance_coeff;
    }
    if (has_tokens && config_.z_loss_coeff > 0) stats->z_loss = router_z_loss(routing.logits) * config_.z_loss_coeff;
    // Kept slots: each expert's rows in the plan less its padding rows (slot -1).
    std::vector<int64_t> kept(E, 0);
    const std::vector<int64_t> slots = plan.slot_index.to_vector<int64_t>();
    int64_t row = 0;
    for (int64_t e = 0; e < E; ++e) {
      for (int64_t r = 0; r < plan.tokens_per_expert[e]; ++r, ++row) kept[e] += slots[row] >= 0 ? 1 : 0;
    }
    stats->tokens_per_expert = Tensor::from_vector(kept, {E}, DType::kI64);
    stats->dropped = plan.dropped;
  }
  return out.reshape({B, T, C});
}

}  // namespace sy
