// `switchyard train --dry-run`: what a configuration would train, without training it: the
// resolved config, parameter and FLOP counts, and a memory estimate per process.
#pragma once

#include <string>

#include "launch/config.h"

namespace sy {

// Bytes per process, estimated from the config alone (the formulas: dry_run.cc and
// configs/README.md). Activations count the tensors the backward keeps for one micro-batch;
// transient buffers (the logits' gradient, one op's workspace) and allocator slack come on top.
struct MemoryEstimate {
  double parameters = 0;
  double gradients = 0;
  double optimizer_state = 0;
  double activations = 0;            // every block's saved tensors
  double activations_recompute = 0;  // with training.recompute
  double total(bool recompute) const {
    return parameters + gradients + optimizer_state + (recompute ? activations_recompute : activations);
  }
};
MemoryEstimate estimate_memory(const TrainConfig& config);

// The report the dry run prints: the config as YAML, then counts and the memory estimate.
std::string describe_run(const TrainConfig& config);

}  // namespace sy
