// Data parallelism: gradient reduction in buckets that start during backward, as soon as
// their last gradient is accumulated (post-accumulate hooks), so communication overlaps the
// rest of the backward pass; the global gradient norm over every rank; parameter agreement.
//
// Scaling. Each rank's loss is the mean over its own tokens and the job's loss is the mean
// of the DP x CP ranks' losses, so:
//   - non-expert parameters (replicated on every rank): gradients averaged over data_context;
//   - expert parameters (rank r holds E / EP experts): the all-to-all adjoint has already
//     summed the EP ranks' contributions into them, so they are summed over expert_data and
//     divided by the size of data_context (= EP x EDP when ETP = TP = 1), as Megatron-Core.
// Buckets hold parameters in reverse registration order (roughly the order backward
// produces their gradients) and never mix expert and non-expert parameters.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "parallel/communicator.h"
#include "parallel/process_groups.h"

namespace sy {

struct ReducedParameter {
  std::string name;
  Tensor tensor;  // a leaf that requires grad
  bool expert = false;
};

class GradientReducer {
 public:
  // Registers a post-accumulate hook on every parameter. bucket_mb: bucket size in MiB of
  // gradient data (a parameter larger than a bucket gets a bucket of its own). With one rank
  // in both groups nothing is communicated and gradients are left as they are.
  GradientReducer(std::vector<ReducedParameter> parameters, const ProcessGroups& groups, double bucket_mb);
  ~GradientReducer();
  // The hooks hold the shared state weakly: a reducer may move, and once destroyed its hooks
  // do nothing. A copy would double the hooks.
  GradientReducer(GradientReducer&&) = default;
  GradientReducer& operator=(GradientReducer&&) = default;
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  // Gradient accumulation: while false (every micro-batch but the step's last), hooks only let
  // gradients accumulate; set true before the last micro-batch's backward so its buckets start
  // as they fill. Exactly one backward per step runs with sync on (a parameter whose gradient
  // arrives twice in it is an error).
  void set_sync(bool sync);
  // Waits for every bucket (starting any whose gradients never arrived, e.g. an unused
  // parameter, with zeros), and leaves the reduced, scaled gradient in each .grad().
  // A parameter with no gradient on any rank of its group keeps an undefined .grad(), as on
  // one rank. Call after the last backward of the step (collective over both groups).
  void finish();

  const std::vector<ReducedParameter>& parameters() const { return parameters_; }
  int64_t num_buckets() const;
  // Indices into parameters() of bucket `bucket`'s members, in the order of its flat buffer.
  std::vector<int64_t> bucket_parameters(int64_t bucket) const;
  // How many buckets have started their reduction since the last finish() (introspection for
  // tests of the overlap with backward).
  int64_t buckets_launched() const;

 private:
  struct State;
  std::vector<ReducedParameter> parameters_;
  std::shared_ptr<State> state_;  // buckets and per-step progress, shared weakly with the hooks
};

// The L2 norm of every gradient of the job, each counted once: the non-expert squares of this
// rank (identical on every rank after reduction) plus the expert squares summed over the EP
// group. Call after GradientReducer::finish().
double global_grad_norm(const std::vector<ReducedParameter>& parameters, const ProcessGroups& groups);

// Clips by the global norm as torch.nn.utils.clip_grad_norm_ (max_norm / (norm + 1e-6) when
// norm > max_norm > 0); returns the norm before clipping.
double clip_global_grad_norm(const std::vector<ReducedParameter>& parameters, const ProcessGroups& groups,
                             double max_norm);

// Makes every replica hold rank 0's values: non-expert parameters broadcast over data_context
// from its first rank, expert parameters over expert_data.
void broadcast_parameters(const std::vector<ReducedParameter>& parameters, const ProcessGroups& groups);

// Empty when every replica holds bit-identical values; otherwise names the first parameter
// that differs and the ranks (collective: every rank calls it, every rank gets the answer).
std::string check_parameters_identical(const std::vector<ReducedParameter>& parameters, const ProcessGroups& groups);

}  // namespace sy
