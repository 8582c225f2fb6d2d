// The training loop: micro-batches with gradient accumulation, global-norm clipping, the LR
// schedule, the optimizer and the aux-loss-free bias update; validation every N steps;
// metrics; checkpoints every N steps, at the end and on SIGINT/SIGTERM; bit-exact resume.
// Under mpirun every rank runs it: each data-parallel rank reads its slice of the global
// batch (`RankPlan` in trainer.cc), MoE layers spread their experts over the expert-parallel
// group, gradients are reduced in buckets during backward, the global norm clips, and rank 0
// writes the metrics; checkpoints are written by all ranks together (sharded).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "launch/config.h"
#include "moe/model.h"
#include "parallel/communicator.h"

namespace sy {

// One step as every rank sees it once its gradients are reduced (before clipping).
struct StepRecord {
  int64_t step = 0;     // 0-based: the step being computed
  double lm_loss = 0;   // the job's mean LM loss of the step
  double aux_loss = 0;  // the job's mean balancing losses
  const Transformer* model = nullptr;  // this rank's model; .grad() holds the reduced gradients
};

struct TrainOptions {
  bool resume = false;        // continue from output_dir/checkpoints/latest
  int64_t stop_at_step = -1;  // stop (with a checkpoint) once this step is done, as on a signal
  std::string config_yaml;    // the resolved config saved with checkpoints (config_to_yaml if empty)
  // The processes to train with: null means the MPI world when init_distributed() ran (one
  // process otherwise). Its size must equal the product of the parallel sizes.
  std::shared_ptr<Communicator> world;
  // Called on every rank at every step (tests compare gradients across layouts).
  std::function<void(const StepRecord&)> on_gradients;
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
