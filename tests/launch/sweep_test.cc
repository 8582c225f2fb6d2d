// Sweeps: expanding the YAML (grid, zip, derived steps, names, errors), the dry-run table,
// running real tiny trainings through the switchyard executable (finished runs skipped,
// interrupted ones resumed, failures reported), and the report's tables.
#include "launch/sweep.h"

#include <fcntl.h>
#include <unistd.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <cmath>
#include <thread>
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "launch/sweep_command.h"
#include "launch/train_command.h"
#include "nlohmann/json.hpp"
#include "tests/launch/tiny_run_support.h"
#include "tests/support/scratch_directory.h"

extern char** environ;

namespace sy::testing {
namespace {

namespace fs = std::filesystem;

// The tiny run's YAML indented as the sweep's inline base.
std::string inline_base(const fs::path& root) {
  std::string out = "base:\n";
  std::istringstream in(tiny_run_yaml(root));
  for (std::string line; std::getline(in, line);) out += "  " + line + "\n";
  return out;
}

absl::StatusOr<Sweep> parse(const std::string& body, const fs::path& root = "/nonexistent") {
  return parse_sweep(inline_base(root) + body, "sweep.yaml", ".");
}

std::string read(const fs::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

TEST(SweepExpansion, GridIsTheCartesianProductFirstAxisSlowest) {
  absl::StatusOr<Sweep> sweep = parse("axes:\n  grid:\n    moe.num_experts: [4, 8]\n    optimizer.lr: [0.01, 0.02, 0.03]\n");
  ASSERT_TRUE(sweep.ok()) << sweep.status();
  ASSERT_EQ(sweep->runs.size(), 6u);
  EXPECT_EQ(sweep->runs[0].name, "num_experts4-lr0.01");
  EXPECT_EQ(sweep->runs[5].name, "num_experts8-lr0.03");
  EXPECT_EQ(sweep->runs[2].config.model.moe.num_experts, 4);
  EXPECT_DOUBLE_EQ(sweep->runs[2].config.optimizer.lr, 0.03);
  EXPECT_EQ(sweep->runs[3].config.model.moe.num_experts, 8);
  EXPECT_DOUBLE_EQ(sweep->runs[3].config.optimizer.lr, 0.01);
  EXPECT_EQ(sweep->runs[3].config.model.hidden_size, 32);  // the base's
  const std::vector<std::pair<std::string, std::string>> axes = {{"moe.num_experts", "8"}, {"optimizer.lr", "0.01"}};
  EXPECT_EQ(sweep->runs[3].axis_values, axes);
}

TEST(SweepExpansion, ZipPairsPositionsAndCrossesWithTheGrid) {
  absl::StatusOr<Sweep> sweep = parse(
      "set: {training.steps: 6}\n"
      "axes:\n  grid:\n    optimizer.lr: [0.01, 0.02]\n"
      "  zip:\n    moe.num_experts: [4, 8]\n    moe.top_k: [1, 2]\n    moe.expert_ffn_size: [32, 16]\n");
  ASSERT_TRUE(sweep.ok()) << sweep.status();
  ASSERT_EQ(sweep->runs.size(), 4u);
  for (const SweepRun& run : sweep->runs) {
    EXPECT_EQ(run.config.training.steps, 6);
    const bool first = run.config.model.moe.num_experts == 4;
    EXPECT_EQ(run.config.model.moe.top_k, first ? 1 : 2) << run.name;
    EXPECT_EQ(run.config.model.moe.expert_ffn_size, first ? 32 : 16) << run.name;
  }
  EXPECT_DOUBLE_EQ(sweep->runs[1].config.optimizer.lr, 0.01);
  EXPECT_EQ(sweep->runs[1].config.model.moe.num_experts, 8);
}

TEST(SweepExpansion, ZippedListsOfDifferentLengthsAreRefusedNamingBoth) {
  absl::StatusOr<Sweep> sweep = parse("axes:\n  zip:\n    moe.num_experts: [4, 8]\n    moe.top_k: [1, 2, 2]\n");
  ASSERT_FALSE(sweep.ok());
  const std::string message(sweep.status().message());
  EXPECT_TRUE(absl::StrContains(message, "sweep.yaml:")) << message;
  EXPECT_TRUE(absl::StrContains(message, "axes.zip.moe.top_k: 3 values")) << message;
  EXPECT_TRUE(absl::StrContains(message, "axes.zip.moe.num_experts has 2")) << message;
}

TEST(SweepExpansion, UnknownAxisKeyNamesFileLineAndClosestKey) {
  absl::StatusOr<Sweep> sweep = parse("axes:\n  grid:\n    moe.num_expert: [4, 8]\n");
  ASSERT_FALSE(sweep.ok());
  const std::string message(sweep.status().message());
  // "base:" and the tiny run's 7 lines, then axes: and grid:; the axis sits on line 11.
  EXPECT_TRUE(absl::StrContains(message, "sweep.yaml:11: axes.grid.moe.num_expert")) << message;
  EXPECT_TRUE(absl::StrContains(message, "did you mean moe.num_experts?")) << message;
}

TEST(SweepExpansion, InvalidValueFailsValidationNamingTheAxis) {
  absl::StatusOr<Sweep> sweep = parse("axes:\n  grid:\n    moe.top_k: [2, 9]\n");
  ASSERT_FALSE(sweep.ok());
  const std::string message(sweep.status().message());
  EXPECT_TRUE(absl::StrContains(message, "axes.grid.moe.top_k")) << message;
  EXPECT_TRUE(absl::StrContains(message, "top_k")) << message;
}

TEST(SweepExpansion, UnknownTopLevelKeyIsRefusedWithSuggestion) {
  absl::StatusOr<Sweep> sweep = parse("axis:\n  grid:\n    moe.top_k: [1]\n");
  ASSERT_FALSE(sweep.ok());
  EXPECT_TRUE(absl::StrContains(sweep.status().message(), "unknown key 'axis' (did you mean axes?)")) << sweep.status();
}

TEST(SweepExpansion, BaseFileIsReadRelativeToTheSweepFile) {
  ScratchDirectory scratch("sy_sweep");
  write(scratch.path() / "configs/base.yaml", tiny_run_yaml(scratch.path()));
  write(scratch.path() / "configs/sweeps/s.yaml", "base: ../base.yaml\naxes:\n  grid:\n    training.steps: [3, 5]\n");
  absl::StatusOr<Sweep> sweep = load_sweep((scratch.path() / "configs/sweeps/s.yaml").string());
  ASSERT_TRUE(sweep.ok()) << sweep.status();
  ASSERT_EQ(sweep->runs.size(), 2u);
  EXPECT_EQ(sweep->runs[1].config.training.steps, 5);
  EXPECT_EQ(sweep->name, "s");

  write(scratch.path() / "configs/sweeps/missing.yaml", "base: nothere.yaml\n");
  absl::StatusOr<Sweep> missing = load_sweep((scratch.path() / "configs/sweeps/missing.yaml").string());
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(absl::StrContains(missing.status().message(), "missing.yaml:1: base: no config file")) << missing.status();
}

TEST(SweepDerive, ComputeBudgetGivesStepsFromTrainingFlopsPerToken) {
  absl::StatusOr<Sweep> sweep = parse("axes:\n  grid:\n    compute_budget: [1.0e9, 4.0e9]\n    model.hidden_size: [32, 64]\n");
  ASSERT_TRUE(sweep.ok()) << sweep.status();
  ASSERT_EQ(sweep->runs.size(), 4u);
  for (const SweepRun& run : sweep->runs) {
    const FlopCount flops = count_flops(run.config.model, run.config.data.seq_length);
    const double tokens_per_step = 8.0 * 16.0;  // global batch 8 x seq_length 16
    EXPECT_EQ(run.tokens_per_step, 128);
    EXPECT_EQ(run.config.training.steps, std::llround(run.compute_budget / (flops.training_flops_per_token * tokens_per_step)))
        << run.name;
    EXPECT_NEAR(run.compute() / run.compute_budget, 1.0, 0.02) << run.name;  // rounding to whole steps
  }
  EXPECT_DOUBLE_EQ(sweep->runs[0].compute_budget, 1e9);
  EXPECT_DOUBLE_EQ(sweep->runs[3].compute_budget, 4e9);
  EXPECT_GT(sweep->runs[2].config.training.steps, 3 * sweep->runs[0].config.training.steps);
}

TEST(SweepDerive, TokensPerActiveParameterGivesStepsFromActiveParameters) {
  absl::StatusOr<Sweep> sweep = parse("derive:\n  tokens_per_active_parameter: 2\naxes:\n  grid:\n    moe.num_experts: [4, 8]\n");
  ASSERT_TRUE(sweep.ok()) << sweep.status();
  for (const SweepRun& run : sweep->runs) {
    const double tokens = 2.0 * static_cast<double>(run.flops.active_parameters);
    EXPECT_EQ(run.config.training.steps, std::llround(tokens / 128.0)) << run.name;
    EXPECT_DOUBLE_EQ(run.tokens_per_active_parameter, 2.0);
  }
}

TEST(SweepDerive, CommandLineOverridesApplyLastAndWinOverDerivedSteps) {
  absl::StatusOr<Sweep> sweep = parse_sweep(inline_base("/nonexistent") + "derive: {compute_budget: 1.0e9}\n", "sweep.yaml", ".",
                                            {"training.steps=3", "parallel.grad_bucket_mb=5"});
  ASSERT_TRUE(sweep.ok()) << sweep.status();
  EXPECT_EQ(sweep->runs[0].config.training.steps, 3);
  EXPECT_DOUBLE_EQ(sweep->runs[0].config.parallel.grad_bucket_mb, 5);
  absl::StatusOr<Sweep> bad = parse_sweep(inline_base("/nonexistent"), "sweep.yaml", ".", {"training.step=3"});
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(absl::StrContains(bad.status().message(), "did you mean training.steps?")) << bad.status();
}

TEST(SweepDerive, DerivedStepsAndAStepsAxisConflict) {
  absl::StatusOr<Sweep> sweep = parse("derive: {compute_budget: 1.0e9}\naxes:\n  grid:\n    training.steps: [4, 8]\n");
  ASSERT_FALSE(sweep.ok());
  EXPECT_TRUE(absl::StrContains(sweep.status().message(), "axes.grid.training.steps: steps are derived")) << sweep.status();
  absl::StatusOr<Sweep> negative = parse("derive: {compute_budget: -1}\n");
  ASSERT_FALSE(negative.ok());
  EXPECT_TRUE(absl::StrContains(negative.status().message(), "derive.compute_budget: expected a positive number"))
      << negative.status();
}

TEST(SweepNames, TemplateFillsAxisValuesAndDuplicatesAreRefused) {
  absl::StatusOr<Sweep> sweep = parse("name: \"E{num_experts}-lr{optimizer.lr}-{index}\"\n"
                                      "axes:\n  grid:\n    moe.num_experts: [4, 8]\n    optimizer.lr: [0.01]\n");
  ASSERT_TRUE(sweep.ok()) << sweep.status();
  EXPECT_EQ(sweep->runs[1].name, "E8-lr0.01-1");
  absl::StatusOr<Sweep> duplicate = parse("name: \"E{num_experts}\"\naxes:\n  grid:\n    moe.num_experts: [4]\n"
                                          "    optimizer.lr: [0.01, 0.02]\n");
  ASSERT_FALSE(duplicate.ok());
  EXPECT_TRUE(absl::StrContains(duplicate.status().message(), "are both named 'E4'")) << duplicate.status();
  absl::StatusOr<Sweep> unknown = parse("name: \"E{experts}\"\naxes:\n  grid:\n    moe.num_experts: [4]\n");
  ASSERT_FALSE(unknown.ok());
  EXPECT_TRUE(absl::StrContains(unknown.status().message(), "'{experts}' is not an axis")) << unknown.status();
}

TEST(SweepDryRun, ListsEveryRunWithCountsComputeAndEstimatedTime) {
  absl::StatusOr<Sweep> sweep = parse("estimate: {flops_per_second: 1.0e8, tokens_per_second: 1000}\n"
                                      "axes:\n  grid:\n    compute_budget: [1.0e9, 2.0e9]\n");
  ASSERT_TRUE(sweep.ok()) << sweep.status();
  const TimeModel time = time_model(*sweep);
  const SweepRun& run = sweep->runs[1];
  EXPECT_DOUBLE_EQ(time.seconds(run), run.tokens() / 1000 + run.compute() / 1e8);
  const std::string table = describe_sweep(*sweep, time);
  EXPECT_TRUE(absl::StrContains(table, "2 runs")) << table;
  for (const SweepRun& r : sweep->runs) {
    EXPECT_TRUE(absl::StrContains(table, r.name)) << table;
    EXPECT_TRUE(absl::StrContains(table, absl::StrCat(" ", r.config.training.steps, " "))) << table;
  }
  EXPECT_TRUE(absl::StrContains(table, "compute_budget=2.0e9")) << table;
  EXPECT_TRUE(absl::StrContains(table, "tokens / 1e+03 tokens/s")) << table;  // says how it estimates
  // Without any rate the table says so instead of inventing one.
  absl::StatusOr<Sweep> unknown = parse("set: {training.peak_flops: 0}\n");
  ASSERT_TRUE(unknown.ok()) << unknown.status();
  EXPECT_TRUE(absl::StrContains(describe_sweep(*unknown, time_model(*unknown)), "no rate known"));
  // training.peak_flops x the assumed MFU stands in for a rate.
  EXPECT_DOUBLE_EQ(time_model(*parse("estimate: {mfu: 0.5}\n")).flops_per_second, 0.5e11);
}

// A sweep of two tiny runs on real data, run through the switchyard executable.
class SweepExecuteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    binary_ = std::string(SY_BINARY_DIR) + "/switchyard";
    if (!fs::exists(binary_)) GTEST_SKIP() << "needs the switchyard executable at " << binary_ << " (build it)";
    prepare_tiny_run(scratch_.path());
  }
  SweepExecution execution() const {
    SweepExecution execution;
    execution.output_dir = (scratch_.path() / "out").string();
    execution.executable = binary_;
    execution.verbose = false;
    return execution;
  }
  ScratchDirectory scratch_{"sy_sweep_run"};
  std::string binary_;
};

TEST_F(SweepExecuteTest, RunsEachOnceThenSkipsFinishedAndResumesInterrupted) {
  absl::StatusOr<Sweep> sweep =
      parse("set: {training.steps: 6, training.eval_interval: 0}\naxes:\n  grid:\n    optimizer.lr: [0.01, 0.02]\n",
            scratch_.path());
  ASSERT_TRUE(sweep.ok()) << sweep.status();
  const fs::path out = scratch_.path() / "out";
  absl::StatusOr<SweepOutcome> first = execute_sweep(*sweep, execution());
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->finished, 2);
  EXPECT_TRUE(first->failures.empty()) << first->failures.front();
  const nlohmann::json manifest = nlohmann::json::parse(read(out / "sweep.json"));
  ASSERT_EQ(manifest["runs"].size(), 2u);
  EXPECT_EQ(manifest["runs"][1]["name"], "lr0.02");
  EXPECT_EQ(manifest["runs"][1]["steps"], 6);
  for (const char* name : {"lr0.01", "lr0.02"}) {
    const nlohmann::json result = nlohmann::json::parse(read(out / name / "result.json"));
    EXPECT_EQ(result["step"], 6) << name;
    EXPECT_TRUE(result["valid_lm_loss"].is_number()) << name;
    EXPECT_TRUE(fs::exists(out / name / "metrics.jsonl")) << name;
    absl::StatusOr<TrainConfig> config = load_config((out / name / "config.yaml").string());
    ASSERT_TRUE(config.ok()) << config.status();
    EXPECT_EQ(config->training.output_dir, (out / name).string());
  }

  // lr0.02 interrupted at step 3: its outputs go, a fresh run stops with a checkpoint.
  const std::string finished_result = read(out / "lr0.01" / "result.json");
  for (const char* entry : {"result.json", "checkpoints", "metrics.jsonl", "train.log"}) fs::remove_all(out / "lr0.02" / entry);
  ::testing::internal::CaptureStdout();
  const int code = run_train({"--config", (out / "lr0.02" / "config.yaml").string(), "--stop-at-step", "3"});
  ::testing::internal::GetCapturedStdout();
  ASSERT_EQ(code, 0);
  ASSERT_TRUE(fs::exists(out / "lr0.02" / "checkpoints" / "latest"));
  ASSERT_FALSE(fs::exists(out / "lr0.02" / "result.json"));

  absl::StatusOr<SweepOutcome> second = execute_sweep(*sweep, execution());
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->skipped, 1);
  EXPECT_EQ(second->resumed, 1);
  EXPECT_EQ(second->finished, 1);
  EXPECT_EQ(read(out / "lr0.01" / "result.json"), finished_result) << "a finished run is not trained again";
  EXPECT_TRUE(absl::StrContains(read(out / "lr0.02" / "train.log"), "--resume"));
  EXPECT_EQ(nlohmann::json::parse(read(out / "lr0.02" / "result.json"))["step"], 6);
}

TEST_F(SweepExecuteTest, FailedRunIsReportedWithItsLogAndTheOthersRun) {
  const std::string good = (scratch_.path() / "corpus").string();
  const std::string missing = (scratch_.path() / "nothing").string();
  absl::StatusOr<Sweep> sweep = parse(absl::StrCat("set: {training.steps: 2, training.eval_interval: 0}\n"
                                                   "name: \"run{index}\"\naxes:\n  grid:\n    data.prefix: [",
                                                   missing, ", ", good, "]\n"),
                                      scratch_.path());
  ASSERT_TRUE(sweep.ok()) << sweep.status();
  SweepExecution options = execution();
  options.jobs = 2;
  absl::StatusOr<SweepOutcome> outcome = execute_sweep(*sweep, options);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->finished, 1);
  ASSERT_EQ(outcome->failures.size(), 1u);
  EXPECT_TRUE(absl::StrContains(outcome->failures[0], "run0: exit code 1")) << outcome->failures[0];
  EXPECT_TRUE(absl::StrContains(outcome->failures[0], "run0/train.log")) << outcome->failures[0];
  EXPECT_TRUE(absl::StrContains(read(scratch_.path() / "out/run0/train.log"), "nothing")) << "the log says what failed";
  EXPECT_TRUE(fs::exists(scratch_.path() / "out/run1/result.json"));
}

TEST_F(SweepExecuteTest, RunWhoseConfigChangedIsRefusedAndKept) {
  absl::StatusOr<Sweep> sweep = parse("set: {training.steps: 2}\n", scratch_.path());
  ASSERT_TRUE(sweep.ok()) << sweep.status();
  const fs::path config = scratch_.path() / "out" / sweep->runs[0].name / "config.yaml";
  write(config, "model: {hidden_size: 64}\n");
  absl::StatusOr<SweepOutcome> outcome = execute_sweep(*sweep, execution());
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  ASSERT_EQ(outcome->failures.size(), 1u);
  EXPECT_TRUE(absl::StrContains(outcome->failures[0], "differs from the sweep's config")) << outcome->failures[0];
  EXPECT_EQ(read(config), "model: {hidden_size: 64}\n");
}

TEST_F(SweepExecuteTest, RanksRunEachUnderMpirunWithThatManyProcesses) {
  if (std::system("command -v mpirun > /dev/null 2>&1") != 0) GTEST_SKIP() << "needs mpirun";
  absl::StatusOr<Sweep> sweep = parse("set: {training.steps: 2, parallel.data: 2, parallel.expert: 2}\n", scratch_.path());
  ASSERT_TRUE(sweep.ok()) << sweep.status();
  SweepExecution options = execution();
  options.ranks = 2;
  options.mpirun = {"mpirun", "--oversubscribe"};
  absl::StatusOr<SweepOutcome> outcome = execute_sweep(*sweep, options);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  const std::string log = read(scratch_.path() / "out" / sweep->runs[0].name / "train.log");
  ASSERT_EQ(outcome->finished, 1) << (outcome->failures.empty() ? "" : outcome->failures[0]) << "\n" << log;
  EXPECT_TRUE(absl::StrContains(log, "mpirun --oversubscribe -np 2 ")) << log;
  EXPECT_TRUE(absl::StrContains(log, "train: 2 ranks")) << log;
}

// Ctrl-C reaches the sweep and its running train child (one process group): the child stops with
// a checkpoint, the sweep starts nothing more and exits 130; the same command resumes the run.
TEST_F(SweepExecuteTest, InterruptStopsRunsWithCheckpointsAndTheSameCommandResumes) {
  const fs::path sweep_file = scratch_.path() / "s.yaml";
  write(sweep_file, inline_base(scratch_.path()) +
                        "set: {training.steps: 60, training.eval_interval: 0}\n"
                        "axes:\n  grid:\n    optimizer.lr: [0.01, 0.02]\n");
  const fs::path out = scratch_.path() / "out";
  std::vector<std::string> args = {binary_, "sweep", "--config", sweep_file.string(), "--output", out.string()};
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETPGROUP);  // its own group, as a shell job
  posix_spawnattr_setpgroup(&attributes, 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  pid_t child = 0;
  ASSERT_EQ(posix_spawn(&child, binary_.c_str(), &actions, &attributes, argv.data(), environ), 0);
  posix_spawnattr_destroy(&attributes);
  posix_spawn_file_actions_destroy(&actions);
  // A few logged steps of the first run (one JSON line each), then Ctrl-C to the whole group.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  auto lines = [](const fs::path& path) {
    const std::string text = read(path);
    return std::count(text.begin(), text.end(), '\n');
  };
  while (lines(out / "lr0.01" / "metrics.jsonl") < 3 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(kill(-child, SIGINT), 0);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 128 + SIGINT);
  ASSERT_TRUE(fs::exists(out / "lr0.01" / "checkpoints" / "latest"));
  EXPECT_FALSE(fs::exists(out / "lr0.01" / "result.json")) << "stopped before the end";
  EXPECT_FALSE(fs::exists(out / "lr0.02" / "train.log")) << "nothing starts after the interrupt";

  absl::StatusOr<Sweep> sweep = load_sweep(sweep_file.string());
  ASSERT_TRUE(sweep.ok()) << sweep.status();
  absl::StatusOr<SweepOutcome> again = execute_sweep(*sweep, execution());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->resumed, 1);
  EXPECT_EQ(again->finished, 2);
  EXPECT_TRUE(again->failures.empty()) << again->failures.front();
  EXPECT_TRUE(absl::StrContains(read(out / "lr0.01" / "train.log"), "--resume"));
  EXPECT_EQ(nlohmann::json::parse(read(out / "lr0.01" / "result.json"))["step"], 60);
}

TEST_F(SweepExecuteTest, PrepareWritesManifestAndConfigsAndTrainsNothing) {
  absl::StatusOr<Sweep> sweep = parse("axes:\n  grid:\n    optimizer.lr: [0.01, 0.02]\n", scratch_.path());
  ASSERT_TRUE(sweep.ok()) << sweep.status();
  SweepExecution options = execution();
  options.prepare_only = true;
  absl::StatusOr<SweepOutcome> outcome = execute_sweep(*sweep, options);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->finished, 0);
  const fs::path out = scratch_.path() / "out";
  EXPECT_EQ(nlohmann::json::parse(read(out / "sweep.json"))["runs"].size(), 2u);
  absl::StatusOr<TrainConfig> config = load_config((out / "lr0.02" / "config.yaml").string());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_DOUBLE_EQ(config->optimizer.lr, 0.02);
  EXPECT_FALSE(fs::exists(out / "lr0.02" / "train.log"));
  EXPECT_FALSE(fs::exists(out / "lr0.02" / "checkpoints"));
}

// Fabricated run directories: a dense and an MoE run finished, one MoE run unfinished.
TEST(SweepReport, TablesListEveryRunWithShapeCountsComputeAndLoss) {
  ScratchDirectory scratch("sy_sweep_report");
  const fs::path root = scratch.path() / "sweeps";
  const std::string tiny = tiny_run_yaml(scratch.path());
  auto run = [&](const std::string& name, const std::vector<std::string>& overrides, const std::string& result) {
    absl::StatusOr<TrainConfig> config = parse_config(tiny, name, overrides);
    ASSERT_TRUE(config.ok()) << config.status();
    write(root / name / "config.yaml", config_to_yaml(*config));
    if (!result.empty()) write(root / name / "result.json", result);
  };
  run("dense/d1", {"model.first_k_dense_layers=2", "moe.num_experts=0", "training.steps=10"},
      R"({"step": 10, "valid_lm_loss": 4.25, "train_lm_loss": 4.5, "tokens_per_second": 100})");
  run("moe/e8", {"moe.num_experts=8", "moe.expert_ffn_size=16", "training.steps=20"},
      R"({"step": 20, "valid_lm_loss": 3.875, "train_lm_loss": 4.0, "tokens_per_second": 90})");
  run("moe/e16", {"moe.num_experts=16", "moe.expert_ffn_size=8", "moe.num_shared_experts=0"}, "");
  write(root / "moe/e8/checkpoints/step_00000020/config.yaml", "not: a run\n");  // inside a run: not a run

  absl::StatusOr<std::vector<ReportRow>> rows = collect_runs(root.string());
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 3u);
  const ReportRow& dense = (*rows)[0];
  const ReportRow& e16 = (*rows)[1];
  const ReportRow& e8 = (*rows)[2];
  EXPECT_EQ(dense.name, "dense/d1");
  EXPECT_EQ(dense.family, "dense");
  EXPECT_EQ(dense.total_parameters, dense.active_parameters);
  EXPECT_EQ(e8.sweep, "moe");
  EXPECT_EQ(e8.family, "E8-K2-F16-S1");
  EXPECT_DOUBLE_EQ(e8.granularity, 2.0 * 32 / 16);
  EXPECT_DOUBLE_EQ(e8.activation_ratio, 0.25);
  EXPECT_GT(e8.total_parameters, e8.active_parameters);
  EXPECT_DOUBLE_EQ(e8.tokens, 20.0 * 8 * 16);
  EXPECT_DOUBLE_EQ(e8.compute, e8.flops_per_token * e8.tokens);
  EXPECT_TRUE(e8.finished);
  EXPECT_DOUBLE_EQ(e8.valid_loss, 3.875);
  EXPECT_FALSE(e16.finished);

  absl::StatusOr<std::string> markdown = write_run_tables(root.string(), *rows);
  ASSERT_TRUE(markdown.ok()) << markdown.status();
  EXPECT_EQ(read(root / "report/runs.md"), *markdown);
  EXPECT_TRUE(absl::StrContains(*markdown, "| dense/d1 | dense | - | - | 0 |")) << *markdown;
  EXPECT_TRUE(absl::StrContains(*markdown, "| moe/e8 | 8 | 2 | 4 | 1 |")) << *markdown;
  EXPECT_TRUE(absl::StrContains(*markdown, "| 3.8750 |")) << *markdown;
  EXPECT_TRUE(absl::StrContains(*markdown, "| moe/e16 | 16 | 2 | 8 | 0 |")) << *markdown;
  EXPECT_TRUE(absl::StrContains(*markdown, "(not finished)")) << *markdown;
  const std::string csv = read(root / "report/runs.csv");
  EXPECT_TRUE(absl::StartsWith(csv, "name,sweep,family,num_experts,top_k,")) << csv;
  EXPECT_TRUE(absl::StrContains(csv, absl::StrCat("moe/e8,moe,E8-K2-F16-S1,8,2,16,1,32,2,4,0.25,", e8.total_parameters, ",",
                                                  e8.active_parameters, ",")))
      << csv;
  EXPECT_TRUE(absl::StrContains(csv, ",1,3.875000,4.000000,90.0\n")) << csv;

  // One run's own folder reports that run alone.
  absl::StatusOr<std::vector<ReportRow>> single = collect_runs((root / "moe/e8/").string());
  ASSERT_TRUE(single.ok()) << single.status();
  ASSERT_EQ(single->size(), 1u);
  EXPECT_EQ((*single)[0].name, "e8");
  EXPECT_DOUBLE_EQ((*single)[0].valid_loss, 3.875);

  // The command writes the same tables (fits left out here: tests/sweep/fit_test.py has them).
  ::testing::internal::CaptureStdout();
  const int code = run_sweep({"report", root.string(), "--no-fits"});
  const std::string printed = ::testing::internal::GetCapturedStdout();
  EXPECT_EQ(code, 0);
  EXPECT_TRUE(absl::StrContains(printed, "3 runs (2 finished)")) << printed;
}

TEST(SweepReport, EmptyDirectoryIsAnError) {
  ScratchDirectory scratch("sy_sweep_report");
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(run_sweep({"report", scratch.path().string(), "--no-fits"}), 1);
  EXPECT_TRUE(absl::StrContains(::testing::internal::GetCapturedStderr(), "no runs"));
}

}  // namespace
}  // namespace sy::testing
