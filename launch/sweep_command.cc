// `switchyard sweep`: argument parsing for the sweep runner and `sweep report` (the tables here,
// the fits and plots by scripts/sweep/fit.py in a child process).
#include "launch/sweep_command.h"

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "launch/sweep.h"

extern char** environ;

namespace sy {
namespace {

namespace fs = std::filesystem;

constexpr const char* kUsage =
    "usage: switchyard sweep --config SWEEP.yaml [--dry-run | --prepare] [--output DIR] [--jobs N]\n"
    "                        [--ranks R] [--mpirun CMD] [--only TEXT ...] [--set key=value ...]\n"
    "                        [--flops-per-second X]\n"
    "       switchyard sweep report DIR [--no-fits]\n"
    "  --config FILE          the sweep: base config, axes (grid/zip), derive (README.md, Sweeps)\n"
    "  --dry-run              list every run (parameters, steps, tokens, compute, estimated time)\n"
    "  --output DIR           where runs go (default: the sweep's output:, else runs/sweeps/<name>)\n"
    "  --jobs N               runs at once (OMP_NUM_THREADS is split among them)\n"
    "  --ranks R              each run under `mpirun -np R`\n"
    "  --prepare              write OUTPUT/sweep.json and each OUTPUT/<run>/config.yaml, print the\n"
    "                         train command of each run, train nothing (one scheduler job per run)\n"
    "  --only TEXT            keep the runs whose name contains TEXT (repeatable)\n"
    "  --set K=V              override a key in every run, last (after derived steps): e.g.\n"
    "                         parallel.data=8 on a cluster, training.steps=3 for a smoke test\n"
    "  --mpirun CMD           the launcher with its own flags (default: mpirun)\n"
    "  --flops-per-second X   the rate for time estimates (else estimate: in the sweep file)\n"
    "  report DIR             every run below DIR into DIR/report/runs.{csv,md}, then the fits and\n"
    "                         plots (scripts/sweep/fit.py: fits.md, fits.json, *.png)\n";

int fail(const std::string& message) {
  std::fprintf(stderr, "switchyard sweep: %s\n", message.c_str());
  return 1;
}

// scripts/sweep/fit.py of the source tree this binary was built from, or next to the binary's
// tree (build/switchyard -> scripts/).
std::string fit_script() {
  if (const char* path = std::getenv("SY_SWEEP_FIT")) return path;
  std::vector<fs::path> candidates = {fs::path(SY_SOURCE_DIR) / "scripts/sweep/fit.py"};
  std::error_code ignored;
  const fs::path self = fs::read_symlink("/proc/self/exe", ignored);
  if (!self.empty()) candidates.push_back(self.parent_path().parent_path() / "scripts/sweep/fit.py");
  for (const fs::path& candidate : candidates) {
    if (fs::exists(candidate)) return candidate.string();
  }
  return candidates.front().string();
}

int run_report(const std::vector<std::string>& args) {
  std::string dir;
  bool fits = true;
  for (const std::string& arg : args) {
    if (arg == "--no-fits") {
      fits = false;
    } else if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (dir.empty() && !arg.starts_with("--")) {
      dir = arg;
    } else {
      std::fprintf(stderr, "switchyard sweep report: unknown argument '%s'\n%s", arg.c_str(), kUsage);
      return 2;
    }
  }
  if (dir.empty()) {
    std::fprintf(stderr, "switchyard sweep report: DIR is required\n%s", kUsage);
    return 2;
  }
  absl::StatusOr<std::vector<ReportRow>> rows = collect_runs(dir);
  if (!rows.ok()) return fail(std::string(rows.status().message()));
  if (rows->empty()) return fail("no runs (directories with config.yaml) below " + dir);
  absl::StatusOr<std::string> table = write_run_tables(dir, *rows);
  if (!table.ok()) return fail(std::string(table.status().message()));
  size_t finished = 0;
  for (const ReportRow& row : *rows) finished += row.finished;
  std::fputs(table->c_str(), stdout);
  const fs::path report = fs::path(dir) / "report";
  std::printf("sweep report: %zu runs (%zu finished) -> %s/runs.csv, runs.md\n", rows->size(), finished, report.c_str());
  if (!fits) return 0;
  std::fflush(stdout);
  const std::string script = fit_script();
  std::vector<std::string> argv = {"/usr/bin/python3", script, (report / "runs.csv").string(), report.string()};
  std::vector<char*> pointers;
  for (std::string& arg : argv) pointers.push_back(arg.data());
  pointers.push_back(nullptr);
  pid_t pid = 0;
  if (int error = posix_spawn(&pid, pointers[0], nullptr, nullptr, pointers.data(), environ); error != 0) {
    return fail("cannot run /usr/bin/python3 " + script + ": " + std::strerror(error));
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return fail("the fits (" + script + ") failed; the tables are written");
  }
  return 0;
}

}  // namespace

int run_sweep(const std::vector<std::string>& args) {
  if (!args.empty() && args[0] == "report") return run_report({args.begin() + 1, args.end()});
  std::string config_path;
  std::vector<std::string> overrides, only;
  bool dry_run = false;
  double flops_per_second = 0;
  SweepExecution execution;
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
    } else if (arg == "--only" && has_value) {
      only.push_back(args[++i]);
    } else if (arg == "--dry-run") {
      dry_run = true;
    } else if (arg == "--prepare") {
      execution.prepare_only = true;
    } else if (arg == "--output" && has_value) {
      execution.output_dir = args[++i];
    } else if ((arg == "--jobs" || arg == "--ranks") && has_value) {
      int value = 0;
      if (!absl::SimpleAtoi(args[++i], &value) || value < 1) {
        return fail(arg + " expects a positive integer, got '" + args[i] + "'");
      }
      (arg == "--jobs" ? execution.jobs : execution.ranks) = value;
    } else if (arg == "--mpirun" && has_value) {
      execution.mpirun = absl::StrSplit(args[++i], ' ', absl::SkipEmpty());
      if (execution.mpirun.empty()) return fail("--mpirun expects a command");
    } else if (arg == "--flops-per-second" && has_value) {
      if (!absl::SimpleAtod(args[++i], &flops_per_second) || !(flops_per_second > 0)) {
        return fail("--flops-per-second expects a positive number, got '" + args[i] + "'");
      }
    } else {
      std::fprintf(stderr, "switchyard sweep: unknown or incomplete argument '%s'\n%s", arg.c_str(), kUsage);
      return 2;
    }
  }
  if (config_path.empty()) {
    std::fprintf(stderr, "switchyard sweep: --config SWEEP.yaml is required\n%s", kUsage);
    return 2;
  }
  absl::StatusOr<Sweep> sweep = load_sweep(config_path, overrides);
  if (!sweep.ok()) return fail(std::string(sweep.status().message()));
  if (!only.empty()) {
    std::erase_if(sweep->runs, [&](const SweepRun& run) {
      return std::none_of(only.begin(), only.end(), [&](const std::string& text) { return run.name.find(text) != std::string::npos; });
    });
    if (sweep->runs.empty()) return fail("no run's name contains " + absl::StrJoin(only, " or "));
  }
  if (execution.output_dir.empty()) {
    execution.output_dir = sweep->output.empty() ? "runs/sweeps/" + sweep->name : sweep->output;
  }
  if (dry_run) {
    std::fputs(describe_sweep(*sweep, time_model(*sweep, flops_per_second)).c_str(), stdout);
    std::printf("output: %s/<run>/\n", execution.output_dir.c_str());
    return 0;
  }
  absl::StatusOr<SweepOutcome> outcome = execute_sweep(*sweep, execution);
  if (absl::IsCancelled(outcome.status())) {  // Ctrl-C: the runs stopped with checkpoints
    fail(std::string(outcome.status().message()));
    return 128 + SIGINT;
  }
  if (!outcome.ok()) return fail(std::string(outcome.status().message()));
  if (execution.prepare_only) {
    for (const SweepRun& run : sweep->runs) {
      const fs::path dir = fs::path(execution.output_dir) / run.name;
      std::printf("switchyard train --config %s%s\n", (dir / "config.yaml").c_str(),
                  fs::exists(dir / "checkpoints" / "latest") ? " --resume" : "");
    }
    for (const std::string& failure : outcome->failures) std::fprintf(stderr, "switchyard sweep: %s\n", failure.c_str());
    return outcome->failures.empty() ? 0 : 1;
  }
  std::printf("sweep: %d finished, %d skipped (finished before), %d resumed, %zu failed -> %s\n", outcome->finished,
              outcome->skipped, outcome->resumed, outcome->failures.size(), execution.output_dir.c_str());
  for (const std::string& failure : outcome->failures) std::fprintf(stderr, "switchyard sweep: failed: %s\n", failure.c_str());
  if (!outcome->failures.empty()) return 1;
  std::printf("sweep: next, `switchyard sweep report %s`\n", execution.output_dir.c_str());
  return 0;
}

}  // namespace sy
