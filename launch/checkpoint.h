// Training checkpoints: a directory per step under the run's checkpoints/ folder holding the
// model and optimizer tensors (safetensors), the trainer state (step, consumed samples, RNG),
// the resolved config, and a protobuf manifest (checkpoint.proto: every tensor's name, shape,
// dtype and file, and the rank layout it was saved under). Written as a temporary directory,
// fsynced and renamed; the `latest` pointer file is replaced last; older steps beyond
// keep_last_n are deleted after. A save killed midway leaves the previous checkpoint loadable.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/nn/module.h"
#include "core/random.h"
#include "optim/optimizer.h"

namespace sy {

struct TrainState {
  int64_t step = 0;              // optimizer steps completed
  int64_t consumed_samples = 0;  // global samples consumed (the loader's position)
  PhiloxState rng;               // the default generator (dropout, router jitter)
  double wall_seconds = 0;       // training time so far
};

// Saves into root/step_<8-digit step>/ and points root/latest at it.
absl::Status save_checkpoint(const std::string& root, const Module& model, const Optimizer& optimizer,
                             const TrainState& state, const std::string& config_yaml, int64_t keep_last_n);

// A step directory: `path` itself when it holds a manifest, else the one root/latest names.
// NotFound names the path when there is none.
absl::StatusOr<std::string> resolve_checkpoint(const std::string& path);

// The resolved config saved with the checkpoint in `directory` (a step directory).
absl::StatusOr<std::string> read_checkpoint_config(const std::string& directory);

// Loads weights (and the optimizer state unless `optimizer` is null) from a step directory.
// Checks the manifest against the files and the model before changing anything: a missing,
// truncated or mismatched file, or a tensor whose shape differs from the model's, fails
// naming the tensor and both shapes.
absl::StatusOr<TrainState> load_checkpoint(const std::string& directory, Module& model, Optimizer* optimizer);

}  // namespace sy
