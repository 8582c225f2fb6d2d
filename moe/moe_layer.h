// The MoE feed-forward layer: router -> permute -> grouped experts -> un-permute, plus the
// shared experts (optionally gated), and the balancing losses of this layer.
#pragma once

#include <memory>

#include "core/nn/module.h"
#include "core/tensor.h"
#include "moe/config.h"
#include "moe/router.h"
#include "parallel/communicator.h"

namespace sy {

class GroupedExperts;
class SwiGLU;
struct DispatchTimings;
class Linear;

// Per-layer losses and counts of one forward, for the loss and for logging.
struct MoeLayerStats {
  Tensor load_balance_loss;           // 0-d, coefficient applied; undefined when off
  Tensor sequence_load_balance_loss;  // idem
  Tensor global_load_balance_loss;    // idem
  Tensor z_loss;                      // idem
  Tensor tokens_per_expert;           // (E) i64, routed slots kept
  int64_t dropped = 0;
};

// How an MoE layer spreads over ranks (moe/dispatcher.h runs it).
struct MoeParallel {
  // EP: this rank owns experts [rank * E / size, (rank + 1) * E / size) of the group and
  // all-to-alls tokens to their owners. Null or size 1: every expert is local.
  std::shared_ptr<Communicator> expert;
  // Global-batch balancing: the step's per-expert counts are summed over this group (DP x CP)
  // before the global load-balancing loss uses them. Null: this rank's counts only.
  std::shared_ptr<Communicator> balance;
  // The dispatcher splits each rank's tokens into this many chunks so that one chunk's
  // all-to-all runs while another chunk is in the experts (1: no overlap).
  int64_t overlap_chunks = 1;
};

// Named as Qwen2-MoE / DeepSeek: gate, experts, shared_experts, shared_expert_gate.
class MoeLayer : public Module {
 public:
  // Initial weights from `generator` (null: the default generator).
  // Under EP the layer holds only its E / EP experts (`experts.w1` is (E / EP, C, 2F)).
  MoeLayer(const MoeConfig& config, int64_t hidden_size, double init_std, double output_std,
           Generator* generator = nullptr, const MoeParallel& parallel = MoeParallel());

  // x (B, T, C) -> (B, T, C). `stats` receives this forward's losses and counts.
  Tensor forward(const Tensor& x, MoeLayerStats* stats);

  // Global-batch balancing: counts accumulated over the micro-batches of the current step,
  // in training summed over parallel.balance before they are added: the job-wide count.
  void reset_step_counts();
  const Tensor& step_tokens_per_expert() const { return step_counts_; }
  Router& router() { return *router_; }
  // The dispatcher's time split (moe/dispatcher.h), accumulated by every later forward and
  // its backward; null (the default) turns the clocks off.
  void set_dispatch_timings(DispatchTimings* timings) { timings_ = timings; }

 private:
  MoeConfig config_;
  MoeParallel parallel_;
  std::shared_ptr<Router> router_;
  std::shared_ptr<GroupedExperts> experts_;
  std::shared_ptr<SwiGLU> shared_experts_;
  std::shared_ptr<Linear> shared_expert_gate_;
  Tensor step_counts_;  // (E) i64
  int64_t step_slots_ = 0;
  DispatchTimings* timings_ = nullptr;
};

}  // namespace sy
