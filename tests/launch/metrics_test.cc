// MetricsWriter: metrics.jsonl lines (flushed as logged, appended on resume), TensorBoard
// scalars read back by the independent reader, and the console in each progress mode.
#include "launch/metrics.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <pty.h>
#include <termios.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/launch/tensorboard_reader.h"
#include "tests/support/scratch_directory.h"

namespace sy {
namespace {

std::vector<nlohmann::ordered_json> read_jsonl(const std::string& path) {
  std::vector<nlohmann::ordered_json> lines;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) lines.push_back(nlohmann::ordered_json::parse(line));
  return lines;
}

LoggingConfig quiet(bool jsonl = true, bool tensorboard = true) {
  LoggingConfig config;
  config.jsonl = jsonl;
  config.tensorboard = tensorboard;
  config.progress = "none";
  return config;
}

class Metrics : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(scratch_.ok()); }
  std::string run_dir() const { return scratch_.file("run"); }
  testing::ScratchDirectory scratch_{"sy_metrics"};
};

TEST_F(Metrics, JsonlHasOneObjectPerLogInOrderFlushedAtOnceAndAppendedOnReopen) {
  const std::string path = run_dir() + "/metrics.jsonl";
  {
    absl::StatusOr<std::unique_ptr<MetricsWriter>> writer = MetricsWriter::open(run_dir(), quiet(true, false));
    ASSERT_TRUE(writer.ok()) << writer.status();
    (*writer)->log(1, {{"train/lm_loss", 5.25}, {"train/lr", 3e-4}, {"moe/layer1/load_cv", 0.1}});
    // Readable before the writer is closed: a killed run keeps what it logged.
    std::vector<nlohmann::ordered_json> lines = read_jsonl(path);
    ASSERT_EQ(lines.size(), 1u);
    EXPECT_EQ(lines[0].dump(), R"({"step":1,"train/lm_loss":5.25,"train/lr":0.0003,"moe/layer1/load_cv":0.1})");
    (*writer)->log(2, {{"train/lm_loss", 4.0}});
  }
  {
    // A resumed run continues the same file.
    absl::StatusOr<std::unique_ptr<MetricsWriter>> writer = MetricsWriter::open(run_dir(), quiet(true, false));
    ASSERT_TRUE(writer.ok()) << writer.status();
    (*writer)->log(3, {{"train/lm_loss", 1.0 / 3}});
  }
  std::vector<nlohmann::ordered_json> lines = read_jsonl(path);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[1].dump(), R"({"step":2,"train/lm_loss":4.0})");
  EXPECT_EQ(lines[2]["step"].get<int64_t>(), 3);
  EXPECT_EQ(lines[2]["train/lm_loss"].get<double>(), 1.0 / 3);  // doubles round-trip exactly
  EXPECT_FALSE(std::filesystem::exists(run_dir() + "/tensorboard"));
}

TEST_F(Metrics, EveryLoggedScalarIsInTheTensorBoardFile) {
  std::string missing = testing::protobuf_python_missing();
  if (!missing.empty()) GTEST_SKIP() << missing;
  std::vector<std::tuple<int64_t, std::string, double>> logged;
  {
    absl::StatusOr<std::unique_ptr<MetricsWriter>> writer = MetricsWriter::open(run_dir(), quiet());
    ASSERT_TRUE(writer.ok()) << writer.status();
    for (int64_t step = 1; step <= 20; ++step) {
      Scalars scalars = {{"train/lm_loss", 6.0 / static_cast<double>(step)},
                         {"train/grad_norm", 0.5 + static_cast<double>(step)},
                         {"moe/layer0/dropped", 0.0}};
      for (const auto& [name, value] : scalars) logged.emplace_back(step, name, value);
      (*writer)->log(step, scalars);
    }
  }
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(run_dir() + "/tensorboard")) files.push_back(entry.path());
  ASSERT_EQ(files.size(), 1u);
  testing::EventFileContents contents = testing::read_event_file(files[0].string());
  ASSERT_TRUE(contents.ok) << contents.output;
  ASSERT_EQ(contents.records.size(), logged.size() + 1) << contents.output;
  EXPECT_EQ(contents.records[0].value("file_version", ""), "brain.Event:2");
  for (size_t i = 0; i < logged.size(); ++i) {
    const auto& [step, name, value] = logged[i];
    const nlohmann::json& record = contents.records[i + 1];
    EXPECT_EQ(record.value("step", int64_t{-1}), step) << i;
    EXPECT_EQ(record.value("tag", ""), name) << i;
    EXPECT_EQ(record.value("value", -1.0), static_cast<double>(static_cast<float>(value))) << i;
  }
  EXPECT_EQ(read_jsonl(run_dir() + "/metrics.jsonl").size(), 20u);
}

TEST_F(Metrics, LinesModePrintsEveryProgressLineAndNoneOnlyMessages) {
  LoggingConfig config = quiet(false, false);
  config.progress = "lines";
  ::testing::internal::CaptureStdout();
  {
    absl::StatusOr<std::unique_ptr<MetricsWriter>> writer = MetricsWriter::open(run_dir(), config);
    ASSERT_TRUE(writer.ok()) << writer.status();
    (*writer)->progress("step 1 loss 5.0");
    (*writer)->progress("step 2 loss 4.0");
    (*writer)->print("eval loss 4.5");
  }
  EXPECT_EQ(::testing::internal::GetCapturedStdout(), "step 1 loss 5.0\nstep 2 loss 4.0\neval loss 4.5\n");

  config.progress = "none";
  ::testing::internal::CaptureStdout();
  {
    absl::StatusOr<std::unique_ptr<MetricsWriter>> writer = MetricsWriter::open(run_dir(), config);
    ASSERT_TRUE(writer.ok()) << writer.status();
    (*writer)->progress("step 1 loss 5.0");
    (*writer)->print("eval loss 4.5");
  }
  EXPECT_EQ(::testing::internal::GetCapturedStdout(), "eval loss 4.5\n");
  EXPECT_FALSE(std::filesystem::exists(run_dir() + "/metrics.jsonl"));

  config.progress = "sometimes";
  absl::StatusOr<std::unique_ptr<MetricsWriter>> writer = MetricsWriter::open(run_dir(), config);
  ASSERT_FALSE(writer.ok());
  EXPECT_NE(writer.status().message().find("logging.progress"), std::string::npos) << writer.status();
}

// On a terminal (a pseudo-terminal standing in for stdout), "auto" rewrites one live line with
// \r and clear-to-end-of-line, and a message clears it, stays, and has the live line redrawn below.
TEST_F(Metrics, AutoModeOnATerminalRewritesOneLiveLine) {
  int master = -1, slave = -1;
  if (openpty(&master, &slave, nullptr, nullptr, nullptr) != 0) GTEST_SKIP() << "no pseudo-terminal available";
  termios raw;
  ASSERT_EQ(tcgetattr(slave, &raw), 0);
  cfmakeraw(&raw);  // no \n -> \r\n translation: the bytes arrive as written
  ASSERT_EQ(tcsetattr(slave, TCSANOW, &raw), 0);
  std::fflush(stdout);
  const int saved_stdout = dup(STDOUT_FILENO);
  ASSERT_GE(saved_stdout, 0);
  ASSERT_GE(dup2(slave, STDOUT_FILENO), 0);
  {
    LoggingConfig config = quiet(false, false);
    config.progress = "auto";
    absl::StatusOr<std::unique_ptr<MetricsWriter>> writer = MetricsWriter::open(run_dir(), config);
    if (writer.ok()) {
      (*writer)->progress("step 1");
      (*writer)->progress("step 2");
      (*writer)->print("eval 4.5");
    }
  }  // closing ends the live line
  std::fflush(stdout);
  dup2(saved_stdout, STDOUT_FILENO);
  close(saved_stdout);
  close(slave);
  std::string seen;
  pollfd poll_master{master, POLLIN, 0};
  char buffer[1024];
  while (poll(&poll_master, 1, 200) > 0) {
    ssize_t n = read(master, buffer, sizeof(buffer));
    if (n <= 0) break;
    seen.append(buffer, static_cast<size_t>(n));
  }
  close(master);
  EXPECT_EQ(seen, "\rstep 1\033[K\rstep 2\033[K\r\033[Keval 4.5\n\rstep 2\033[K\n");
}

}  // namespace
}  // namespace sy
