// Scaling-law sweeps: a sweep YAML (a base config, axes over config keys, derived step counts)
// expanded into runs, each trained by `switchyard train` in its own directory; and the report
// that gathers the finished runs into a table. The command line: launch/sweep_command.h.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "launch/config.h"
#include "moe/model.h"

namespace sy {

// One run of a sweep, resolved: its config validated by the config machinery.
struct SweepRun {
  std::string name;
  // The axis values that made it, in axis order: key -> value as written in the sweep file.
  std::vector<std::pair<std::string, std::string>> axis_values;
  std::vector<std::string> overrides;  // the --set assignments applied to the base (steps included)
  double compute_budget = 0;           // derived: FLOPs asked for (0: none)
  double tokens_per_active_parameter = 0;  // derived: D / N_active asked for (0: none)
  TrainConfig config;                  // training.output_dir is still the base's; the sweep sets it
  FlopCount flops;
  int64_t tokens_per_step = 0;  // global batch x seq_length
  double tokens() const { return static_cast<double>(config.training.steps) * static_cast<double>(tokens_per_step); }
  double compute() const { return flops.training_flops_per_token * tokens(); }
};

struct Sweep {
  std::string path;  // the sweep file
  std::string name;  // its file name without extension
  std::vector<SweepRun> runs;
  // For time estimates (estimate: in the sweep file): a run takes tokens / tokens_per_second +
  // compute / flops_per_second; 0 leaves a term out. Without a rate, the base's
  // training.peak_flops x mfu stands for flops_per_second.
  double flops_per_second = 0;
  double tokens_per_second = 0;
  double mfu = 0.3;
  std::string output;  // default output directory (output:, relative to the current directory)
};

// Reads and expands a sweep file. Errors name the file, the line and the key. `overrides`
// ("key=value", as --set) apply to every run last, after the derived steps.
absl::StatusOr<Sweep> load_sweep(const std::string& path, const std::vector<std::string>& overrides = {});
// The same from text; `name` stands for the file, `base_dir` resolves relative paths.
absl::StatusOr<Sweep> parse_sweep(const std::string& yaml, const std::string& name, const std::string& base_dir,
                                  const std::vector<std::string>& overrides = {});

// How long runs take: seconds = tokens / tokens_per_second + compute / flops_per_second (a
// fixed cost per token, embedding, softmax and optimizer, plus the FLOPs at a sustained rate).
struct TimeModel {
  double flops_per_second = 0, tokens_per_second = 0;  // 0: the term is left out
  std::string source;                                 // where the rates come from, for people
  bool known() const { return flops_per_second > 0 || tokens_per_second > 0; }
  double seconds(const SweepRun& run) const;
};
// The sweep's estimate: rates, overridden by `flops_per_second` > 0 (and then without the
// per-token term unless the sweep gives one).
TimeModel time_model(const Sweep& sweep, double flops_per_second = 0);
// The dry-run table: every run's name, axis values, parameters, steps, tokens, compute and
// estimated time, then the totals.
std::string describe_sweep(const Sweep& sweep, const TimeModel& time);

struct SweepExecution {
  std::string output_dir;
  int jobs = 1;    // runs at once
  int ranks = 1;   // processes per run (mpirun -np ranks when > 1)
  std::string executable;              // switchyard; empty: /proc/self/exe
  std::vector<std::string> mpirun = {"mpirun"};  // the launcher and its own arguments
  bool verbose = true;                 // progress lines on stdout
  bool prepare_only = false;           // write sweep.json and the run folders' configs, train nothing
};

struct SweepOutcome {
  int finished = 0, skipped = 0, resumed = 0;
  std::vector<std::string> failures;  // "name: exit code 1, log OUTPUT/name/train.log"
};

// Writes OUTPUT/sweep.json and each run's OUTPUT/<name>/config.yaml, then trains the runs
// not finished yet (result.json present: skipped; checkpoints present: --resume). A failed
// run is recorded and the others go on. Errors only for what stops the whole sweep.
// `prepare_only` stops after writing (for schedulers that start each run as its own job).
absl::StatusOr<SweepOutcome> execute_sweep(const Sweep& sweep, const SweepExecution& execution);

// One row of the report: a run directory's config and result.
struct ReportRow {
  std::string name;    // the run directory relative to the report's root
  std::string sweep;   // the sweep it belongs to (its directory, "" at the root)
  std::string family;  // "dense" or "E{E}-K{K}-F{F}-S{shared}": runs differing only in size of training
  int64_t num_experts = 0, top_k = 0, expert_ffn_size = 0, shared_experts = 0, hidden_size = 0, num_layers = 0;
  double granularity = 0;       // 2 C / F (Towards Greater Leverage); 0 for dense
  double activation_ratio = 1;  // K / E; 1 for dense
  int64_t total_parameters = 0, active_parameters = 0;
  double flops_per_token = 0, compute = 0, compute_budget = 0;
  int64_t steps = 0;
  double tokens = 0;
  bool finished = false;
  double valid_loss = 0, train_loss = 0, tokens_per_second = 0;
};

// Every run below `dir` (a directory with config.yaml), finished or not, sorted by name.
absl::StatusOr<std::vector<ReportRow>> collect_runs(const std::string& dir);
// Writes DIR/report/runs.csv and runs.md; returns the Markdown.
absl::StatusOr<std::string> write_run_tables(const std::string& dir, const std::vector<ReportRow>& rows);

}  // namespace sy
