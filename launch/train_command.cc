#include "launch/train_command.h"

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "launch/config.h"
#include "launch/dry_run.h"
#include "launch/trainer.h"
#include "parallel/communicator.h"

namespace sy {
namespace {

constexpr const char* kUsage =
    "usage: switchyard train --config FILE [--set key.path=value ...] [--dry-run] [--resume]\n"
    "                        [--stop-at-step N]\n"
    "  --config FILE      the run's YAML (configs/README.md documents every key)\n"
    "  --set K=V          override one key after the files, e.g. --set training.steps=200\n"
    "  --dry-run          print the resolved config, parameters, FLOPs and memory; train nothing\n"
    "  --resume           continue from training.output_dir/checkpoints/latest, bit-exactly\n"
    "  --stop-at-step N   stop with a checkpoint once step N is done (resume later)\n";

int fail(const std::string& message) {
  std::fprintf(stderr, "switchyard train: %s\n", message.c_str());
  return 1;
}

}  // namespace

int run_train(const std::vector<std::string>& args) {
  std::string config_path;
  std::vector<std::string> overrides;
  bool dry_run = false;
  TrainOptions options;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    const bool has_value = i + 1 < args.size();
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (arg == "--config" && has_value) {
      config_path = args[++i];
    } else if (arg == "--set" && has_value) {
      overrides.push_back(args[++i]);
    } else if (arg == "--dry-run") {
      dry_run = true;
    } else if (arg == "--resume") {
      options.resume = true;
    } else if (arg == "--stop-at-step" && has_value) {
      if (!absl::SimpleAtoi(args[++i], &options.stop_at_step) || options.stop_at_step < 1) {
        return fail("--stop-at-step expects a positive integer, got '" + args[i] + "'");
      }
    } else {
      std::fprintf(stderr, "switchyard train: unknown or incomplete argument '%s'\n%s", arg.c_str(), kUsage);
      return 2;
    }
  }
  if (config_path.empty()) {
    std::fprintf(stderr, "switchyard train: --config FILE is required\n%s", kUsage);
    return 2;
  }
  absl::StatusOr<TrainConfig> config = load_config(config_path, overrides);
  if (!config.ok()) return fail(std::string(config.status().message()));
  if (dry_run) {
    std::fputs(describe_run(*config).c_str(), stdout);
    return 0;
  }
  // A plain run is a one-rank world; under mpirun every rank runs this. Once ranks may be
  // inside collectives, one rank's error ends the whole job (naming the rank) rather than
  // leaving the others to wait for it.
  if (!distributed_initialized()) init_distributed(nullptr, nullptr);  // main() finalizes
  const int world_size = world_communicator()->size();
  const bool first_rank = world_communicator()->rank() == 0;
  absl::StatusOr<TrainSummary> summary = train(*config, options);
  if (!summary.ok()) {
    if (world_size > 1) abort_distributed("switchyard train: " + std::string(summary.status().message()));
    return fail(std::string(summary.status().message()));
  }
  if (summary->interrupted) return summary->signal ? 128 + summary->signal : 0;
  if (!first_rank) return 0;
  std::printf("train: done, %lld steps | final valid loss %.4f nats/token (unigram entropy %.4f) | "
              "median %.0f tokens/s, MFU %.1f%%\n",
              static_cast<long long>(summary->last_step), summary->valid_loss, summary->unigram_entropy,
              summary->tokens_per_second, 100 * summary->mfu);
  return 0;
}

}  // namespace sy
