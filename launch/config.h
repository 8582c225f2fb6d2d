// The run configuration: one typed struct gathering each layer's own config (model and MoE
// from moe/, data from data/, optimizer and schedule from optim/) plus the trainer's, read
// from YAML, validated in one place. Every key, its default and meaning: configs/README.md.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "data/config.h"
#include "moe/config.h"
#include "optim/optimizer.h"
#include "optim/schedule.h"

namespace sy {

struct TrainingConfig {
  int64_t micro_batch_size = 8;     // B: sequences per forward/backward
  int64_t global_batch_size = 8;    // sequences per optimizer step (= B x accumulation x DP)
  int64_t steps = 100;              // optimizer steps
  int64_t skip_samples = 0;         // global sample numbers start here (e.g. after a dense run's samples)
  int64_t eval_interval = 50;       // validation every N steps (0: only at the end)
  int64_t eval_batches = 4;         // micro-batches per validation
  int64_t log_interval = 1;         // metrics every N steps
  std::string output_dir = "runs/default";  // checkpoints/, metrics.jsonl, tensorboard/
  std::string device = "cpu";       // cpu | cuda
  bool recompute = false;           // activation recomputation per transformer block
  double peak_flops = 0;            // per process, for MFU; 0 = measured sgemm peak
  uint64_t seed = 1234;             // dropout, router jitter
  bool operator==(const TrainingConfig&) const = default;
};

struct ParallelConfig {
  int64_t tensor = 1, context = 1, data = 1, pipeline = 1, expert = 1, expert_tensor = 1;
  double collective_timeout_s = 300;
  int64_t overlap_chunks = 1;  // EP dispatcher: token chunks whose all-to-all overlaps the experts
  double grad_bucket_mb = 25;  // data-parallel gradient bucket size (MiB)
  bool operator==(const ParallelConfig&) const = default;
};

struct CheckpointConfig {
  int64_t interval = 0;     // save every N steps (0: only at the end and on a signal)
  int64_t keep_last_n = 3;  // older step directories are deleted (0: keep all)
  std::string load;         // initial weights from a checkpoint; fresh optimizer and step 0
  bool operator==(const CheckpointConfig&) const = default;
};

struct LoggingConfig {
  bool tensorboard = true;
  bool jsonl = true;
  std::string progress = "auto";  // auto (a live line on a terminal) | lines | none
  bool operator==(const LoggingConfig&) const = default;
};

struct TrainConfig {
  ModelConfig model;
  DataConfig data;
  OptimizerConfig optimizer;
  ScheduleConfig schedule;
  TrainingConfig training;
  ParallelConfig parallel;
  CheckpointConfig checkpoint;
  LoggingConfig logging;

  int64_t gradient_accumulation_steps() const;  // global / (micro x data)
  bool operator==(const TrainConfig&) const = default;
};

// Reads `path` (following `include:` base files, later keys overriding earlier ones), applies
// `overrides` ("training.steps=200", YAML values), and validates. Errors name the file, line
// and key: unknown keys (with the closest known one), wrong types, out-of-range values,
// sizes that do not divide. Relative paths inside a file resolve against that file's folder.
absl::StatusOr<TrainConfig> load_config(const std::string& path, const std::vector<std::string>& overrides = {});
// The closest of `candidates` to `name` by edit distance (also comparing the parts after the
// last dot, so that a key put in the wrong section is found), or "" when none is close: the
// "did you mean" of every config-like file (train configs, sweeps).
std::string closest_name(std::string_view name, const std::vector<std::string>& candidates);
// The same from YAML text; `name` stands for the file in messages, `base_dir` resolves paths.
absl::StatusOr<TrainConfig> parse_config(const std::string& yaml, const std::string& name,
                                         const std::vector<std::string>& overrides = {},
                                         const std::string& base_dir = ".");
// Every key with its resolved value, loadable by parse_config to the same struct.
std::string config_to_yaml(const TrainConfig& config);
// Every section's validate() and the cross-section checks (batch sizes divide, seq_length <=
// max_seq_len, parallel sizes that exist); messages name the keys but no file.
absl::Status validate_config(const TrainConfig& config);

// One row of the key table that parsing, config_to_yaml and configs/README.md share: the dotted
// key, its type, its default as config_to_yaml writes it, and its meaning.
struct ConfigKeyInfo {
  std::string name, type, default_value, doc;
};
std::vector<ConfigKeyInfo> config_keys();

}  // namespace sy
