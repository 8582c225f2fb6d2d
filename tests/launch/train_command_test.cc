// `switchyard train` as users run it: bad input stops it with a message and a non-zero exit
// before anything is overwritten, and SIGINT stops it with a checkpoint to resume from.
#include "launch/train_command.h"

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "launch/checkpoint.h"
#include "tests/launch/tiny_run_support.h"
#include "tests/support/scratch_directory.h"

extern char** environ;

namespace sy::testing {
namespace {

namespace fs = std::filesystem;

std::string write_file(const fs::path& path, const std::string& text) {
  std::ofstream(path) << text;
  return path.string();
}

std::string bytes_of(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Runs `switchyard train args...` in this process; returns the exit code and what it printed on stderr.
std::pair<int, std::string> train_command(std::vector<std::string> args) {
  args.insert(args.begin(), {"--set", "logging.progress=none"});
  ::testing::internal::CaptureStderr();
  int code = run_train(args);
  return {code, ::testing::internal::GetCapturedStderr()};
}

TEST(TrainCommand, UnknownKeyExitsNonZeroNamingFileLineAndClosestKey) {
  ScratchDirectory scratch("sy_train_command");
  const std::string config = write_file(scratch.path() / "run.yaml", prepare_tiny_run(scratch.path()) +
                                                                        "checkpoint:\n  keep_last: 2\n");
  auto [code, message] = train_command({"--config", config, "--set", "training.output_dir=" + scratch.file("run")});
  EXPECT_EQ(code, 1);
  EXPECT_NE(message.find("run.yaml:"), std::string::npos) << message;
  EXPECT_NE(message.find("keep_last"), std::string::npos) << message;
  EXPECT_NE(message.find("checkpoint.keep_last_n"), std::string::npos) << message;  // the suggestion
  EXPECT_FALSE(fs::exists(scratch.path() / "run"));
}

TEST(TrainCommand, MissingDataFileExitsNonZeroNamingItAndWritesNothing) {
  ScratchDirectory scratch("sy_train_command");
  const std::string config = write_file(scratch.path() / "run.yaml", prepare_tiny_run(scratch.path()));
  fs::remove(scratch.path() / "corpus.bin");
  auto [code, message] = train_command({"--config", config, "--set", "training.output_dir=" + scratch.file("run")});
  EXPECT_EQ(code, 1);
  EXPECT_NE(message.find("corpus.bin"), std::string::npos) << message;
  EXPECT_FALSE(fs::exists(scratch.path() / "run"));
}

TEST(TrainCommand, CorruptedCheckpointExitsNonZeroAndLeavesTheRunAsItWas) {
  ScratchDirectory scratch("sy_train_command");
  const std::string config = write_file(scratch.path() / "run.yaml", prepare_tiny_run(scratch.path()));
  const std::string output = "training.output_dir=" + scratch.file("run");
  ASSERT_EQ(train_command({"--config", config, "--set", output, "--set", "training.steps=2"}).first, 0);
  const fs::path step = scratch.path() / "run" / "checkpoints" / "step_00000002";
  fs::resize_file(step / "optimizer.safetensors", fs::file_size(step / "optimizer.safetensors") - 100);
  const std::string optimizer_before = bytes_of(step / "optimizer.safetensors");
  const std::string model_before = bytes_of(step / "model.safetensors");
  const std::string metrics_before = bytes_of(scratch.path() / "run" / "metrics.jsonl");

  auto [code, message] =
      train_command({"--config", config, "--set", output, "--set", "training.steps=4", "--resume"});
  EXPECT_EQ(code, 1);
  EXPECT_NE(message.find("optimizer.safetensors"), std::string::npos) << message;
  EXPECT_EQ(bytes_of(step / "optimizer.safetensors"), optimizer_before);
  EXPECT_EQ(bytes_of(step / "model.safetensors"), model_before);
  EXPECT_EQ(bytes_of(scratch.path() / "run" / "metrics.jsonl"), metrics_before);
  EXPECT_FALSE(fs::exists(scratch.path() / "run" / "checkpoints" / "step_00000004"));
}

int count_lines(const fs::path& path) {
  std::ifstream in(path);
  int lines = 0;
  for (std::string line; std::getline(in, line);) ++lines;
  return lines;
}

TEST(TrainCommand, SigintStopsAfterTheStepWithACheckpointToResumeFrom) {
  const std::string binary = std::string(SY_BINARY_DIR) + "/switchyard";
  if (!fs::exists(binary)) GTEST_SKIP() << "needs the switchyard executable at " << binary << " (build it)";
  ScratchDirectory scratch("sy_train_command");
  const std::string config = write_file(scratch.path() / "run.yaml", prepare_tiny_run(scratch.path()));
  const fs::path run = scratch.path() / "run";
  std::vector<std::string> args = {binary, "train", "--config", config, "--set", "training.output_dir=" + run.string(),
                                   "--set", "training.steps=100000", "--set", "logging.progress=none",
                                   "--set", "training.eval_interval=0"};
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  pid_t child = 0;
  ASSERT_EQ(posix_spawn(&child, binary.c_str(), nullptr, nullptr, argv.data(), environ), 0);
  // Wait for a few logged steps (one JSON line each), then interrupt.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (count_lines(run / "metrics.jsonl") < 3 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(kill(child, SIGINT), 0);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << "killed instead of stopping cleanly, status " << status;
  EXPECT_EQ(WEXITSTATUS(status), 128 + SIGINT);

  absl::StatusOr<std::string> latest = resolve_checkpoint((run / "checkpoints").string());
  ASSERT_TRUE(latest.ok()) << latest.status();
  const int logged = count_lines(run / "metrics.jsonl");
  EXPECT_GE(logged, 3);
  EXPECT_EQ(fs::path(*latest).filename().string(), "step_" + std::string(8 - std::to_string(logged).size(), '0') +
                                                          std::to_string(logged))
      << "the checkpoint is the last step logged";
  // The same overrides as the interrupted run (no validation, which would log lines of its own).
  auto [code, message] = train_command({"--config", config, "--set", "training.output_dir=" + run.string(),
                                        "--set", "training.steps=100000", "--set", "training.eval_interval=0",
                                        "--resume", "--stop-at-step",
                                        std::to_string(logged + 2)});
  EXPECT_EQ(code, 0) << message;
  EXPECT_EQ(count_lines(run / "metrics.jsonl"), logged + 2);
}

}  // namespace
}  // namespace sy::testing
