// The training loop: micro-batches with gradient accumulation, global-norm clipping, the LR
// schedule, the optimizer and the aux-loss-free bias update; validation every N steps;
// metrics; checkpoints every N steps, at the end and on SIGINT/SIGTERM; bit-exact resume.
// Single process here: every per-rank assumption (which samples a rank reads, which norm it
// clips by) sits in `RankPlan` in trainer.cc.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "launch/config.h"

namespace sy {

struct TrainOptions {
  bool resume = false;        // continue from output_dir/checkpoints/latest
  int64_t stop_at_step = -1;  // stop (with a checkpoint) once this step is done, as on a signal
  std::string config_yaml;    // the resolved config saved with checkpoints (config_to_yaml if empty)
};

struct TrainSummary {
  int64_t first_step = 0;   // the step training started from (> 0 when resumed)
  int64_t last_step = 0;    // steps completed
  double last_train_loss = 0;  // LM loss of the last step
  double valid_loss = 0;       // last validation LM loss (nats/token); NaN when none ran
  double unigram_entropy = 0;  // of the training data's tokens, nats/token
  double tokens_per_second = 0;  // median over the run's steps
  double mfu = 0;                // median, against TrainingConfig::peak_flops
  bool interrupted = false;      // stopped by a signal or stop_at_step
  int signal = 0;                // the signal that stopped it, 0 if none
};

// Validates everything (config, data files, tokenizer vocabulary against model.vocab_size,
// the output directory: existing checkpoints need `resume`) before the first step.
absl::StatusOr<TrainSummary> train(const TrainConfig& config, const TrainOptions& options);

}  // namespace sy
