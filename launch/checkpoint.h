// Training checkpoints: a directory per step under the run's checkpoints/ folder holding the
// model and optimizer tensors (safetensors), the trainer state (step, consumed samples, RNG),
// the resolved config, and a protobuf manifest (checkpoint.proto: every tensor's name, shape,
// dtype and file, and the rank layout it was saved under). Written as a temporary directory,
// fsynced and renamed; the `latest` pointer file is replaced last; older steps beyond
// keep_last_n are deleted after. A save killed midway leaves the previous checkpoint loadable.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/nn/module.h"
#include "core/random.h"
#include "optim/optimizer.h"
#include "parallel/process_groups.h"

namespace sy {

struct TrainState {
  int64_t step = 0;              // optimizer steps completed
  int64_t consumed_samples = 0;  // global samples consumed (the loader's position)
  PhiloxState rng;               // the default generator (dropout, router jitter)
  double wall_seconds = 0;       // training time so far
};

// A tensor this rank holds only a block of: the global shape and the block's offsets.
struct TensorBox {
  std::vector<int64_t> global_shape;
  std::vector<int64_t> offsets;
};

// Where this rank stands in a multi-process save or load. Model tensors not in `shards` are
// replicated (every rank holds all of them); an optimizer entry "<state>.<name>" is sharded
// like parameter <name>. groups == nullptr: one process.
struct CheckpointRank {
  const ProcessGroups* groups = nullptr;
  std::map<std::string, TensorBox> shards;
};

// Saves into root/step_<8-digit step>/ and points root/latest at it. Multi-process: collective
// over groups->world (a shared directory that every rank can write); each tensor block is
// written once (replicated tensors by rank 0, a block of a sharded one by the first rank of
// its expert-data group), and the manifest records every block's box. Every rank returns the
// same status (a failure on one rank names it).
absl::Status save_checkpoint(const std::string& root, const Module& model, const Optimizer& optimizer,
                             const TrainState& state, const std::string& config_yaml, int64_t keep_last_n,
                             const CheckpointRank& rank = CheckpointRank());

// A step directory: `path` itself when it holds a manifest, else the one root/latest names.
// NotFound names the path when there is none.
absl::StatusOr<std::string> resolve_checkpoint(const std::string& path);

// The resolved config saved with the checkpoint in `directory` (a step directory).
absl::StatusOr<std::string> read_checkpoint_config(const std::string& directory);

// Loads weights (and the optimizer state unless `optimizer` is null) from a step directory.
// Checks the manifest against the files and the model before changing anything: a missing,
// truncated or mismatched file, or a tensor whose shape differs from the model's, fails
// naming the tensor and both shapes.
// The checkpoint may have been saved under any rank layout: each rank reads, from whatever
// blocks the manifest lists, exactly the box it holds now (resharding). Multi-process:
// collective over groups->world; no rank changes anything unless every rank's checks pass,
// and every rank returns the same status.
absl::StatusOr<TrainState> load_checkpoint(const std::string& directory, Module& model, Optimizer* optimizer,
                                           const CheckpointRank& rank = CheckpointRank());

// Writes the model tensors of a step directory, whatever layout saved them, as one
// safetensors file of whole tensors (`switchyard checkpoint export`); the output is written
// to a temporary name and renamed.
absl::Status export_checkpoint(const std::string& directory, const std::string& output_path);

}  // namespace sy
