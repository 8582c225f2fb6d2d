// The trainer end to end on a tiny corpus: it learns, resuming is bit-exact, and bad inputs
// stop it before anything is written.
#include "launch/trainer.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "launch/config.h"
#include "tests/launch/tiny_run_support.h"
#include "tests/support/scratch_directory.h"

namespace sy::testing {
namespace {

namespace fs = std::filesystem;

TrainConfig config_for(const std::string& yaml, const std::string& output_dir,
                       std::vector<std::string> overrides = {}) {
  overrides.push_back("training.output_dir=" + output_dir);
  absl::StatusOr<TrainConfig> config = parse_config(yaml, "trainer_test.yaml", overrides);
  EXPECT_TRUE(config.ok()) << config.status();
  return *config;
}

// train/lm_loss by step from metrics.jsonl.
std::map<int64_t, double> losses(const fs::path& output_dir) {
  std::map<int64_t, double> result;
  std::ifstream in(output_dir / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    nlohmann::json record = nlohmann::json::parse(line);
    if (record.contains("train/lm_loss")) result[record["step"]] = record["train/lm_loss"];
  }
  return result;
}

std::string bytes_of(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(Trainer, LossFallsOnATinyCorpus) {
  ScratchDirectory scratch("sy_trainer");
  const std::string yaml = prepare_tiny_run(scratch.path());
  TrainConfig config = config_for(yaml, scratch.file("run"), {"training.steps=30"});
  absl::StatusOr<TrainSummary> summary = train(config, {});
  ASSERT_TRUE(summary.ok()) << summary.status();
  std::map<int64_t, double> by_step = losses(scratch.path() / "run");
  ASSERT_EQ(by_step.size(), 30u);
  EXPECT_LT(by_step[30], by_step[1] - 1.0);
  EXPECT_LT(summary->valid_loss, summary->unigram_entropy);
  EXPECT_TRUE(fs::exists(scratch.path() / "run" / "result.json"));
}

TEST(Trainer, ResumeIsBitExact) {
  ScratchDirectory scratch("sy_trainer");
  const std::string yaml = prepare_tiny_run(scratch.path());
  ASSERT_TRUE(train(config_for(yaml, scratch.file("whole")), {}).ok());
  TrainOptions first_half;
  first_half.stop_at_step = 4;
  absl::StatusOr<TrainSummary> stopped = train(config_for(yaml, scratch.file("halves")), first_half);
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  EXPECT_TRUE(stopped->interrupted);
  EXPECT_EQ(stopped->last_step, 4);
  TrainOptions second_half;
  second_half.resume = true;
  absl::StatusOr<TrainSummary> resumed = train(config_for(yaml, scratch.file("halves")), second_half);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ(resumed->first_step, 4);
  EXPECT_EQ(resumed->last_step, 8);

  std::map<int64_t, double> whole = losses(scratch.path() / "whole"), halves = losses(scratch.path() / "halves");
  ASSERT_EQ(whole.size(), 8u);
  EXPECT_EQ(whole, halves);  // every step's loss, bit for bit
  for (const char* file : {"model.safetensors", "optimizer.safetensors"}) {
    const fs::path a = scratch.path() / "whole" / "checkpoints" / "step_00000008" / file;
    const fs::path b = scratch.path() / "halves" / "checkpoints" / "step_00000008" / file;
    ASSERT_TRUE(fs::exists(a) && fs::exists(b)) << a << " " << b;
    EXPECT_TRUE(bytes_of(a) == bytes_of(b)) << file << " differs after resuming";
  }
}

TEST(Trainer, CheckpointLoadStartsFromTheWeightsWithAFreshOptimizer) {
  ScratchDirectory scratch("sy_trainer");
  const std::string yaml = prepare_tiny_run(scratch.path());
  ASSERT_TRUE(train(config_for(yaml, scratch.file("first"), {"training.steps=3", "moe.expert_bias=false"}), {}).ok());
  // lr 1e-30: the one step of the second run moves no f32 weight by even one ulp, so its
  // weights are the first run's.
  absl::StatusOr<TrainSummary> second =
      train(config_for(yaml, scratch.file("second"),
                       {"training.steps=1", "moe.expert_bias=false", "optimizer.lr=1e-30", "schedule.warmup_steps=0",
                        "checkpoint.load=" + scratch.file("first") + "/checkpoints"}),
            {});
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->first_step, 0);
  EXPECT_EQ(bytes_of(scratch.path() / "second" / "checkpoints" / "step_00000001" / "model.safetensors"),
            bytes_of(scratch.path() / "first" / "checkpoints" / "step_00000003" / "model.safetensors"));
}

// A run continued from another's step-4 weights with training.skip_samples = 4 steps of samples
// reads the batch the other run read at its step 5: its first loss (computed before any update)
// is that step's loss. Without the skip it reads the first batch again.
TEST(Trainer, SkipSamplesReadsTheSamplesAfterThoseARunConsumed) {
  ScratchDirectory scratch("sy_trainer");
  const std::string yaml = prepare_tiny_run(scratch.path());
  const std::vector<std::string> common = {"moe.expert_bias=false", "checkpoint.keep_last_n=0"};
  std::vector<std::string> whole_overrides = common;
  whole_overrides.push_back("checkpoint.interval=4");
  ASSERT_TRUE(train(config_for(yaml, scratch.file("whole"), whole_overrides), {}).ok());
  const std::map<int64_t, double> whole = losses(scratch.path() / "whole");
  ASSERT_EQ(whole.size(), 8u);
  const int64_t global_batch = config_for(yaml, scratch.file("unused")).training.global_batch_size;

  // 4 steps after 4 steps' samples: the sample index is built for as many samples as the whole run's.
  auto continued_first_loss = [&](const std::string& name, int64_t skip) {
    std::vector<std::string> overrides = common;
    overrides.push_back("training.steps=4");
    overrides.push_back("training.skip_samples=" + std::to_string(skip));
    overrides.push_back("checkpoint.load=" + scratch.file("whole") + "/checkpoints/step_00000004");
    absl::StatusOr<TrainSummary> summary = train(config_for(yaml, scratch.file(name), overrides), {});
    EXPECT_TRUE(summary.ok()) << summary.status();
    return losses(scratch.path() / name).at(1);
  };
  EXPECT_NEAR(continued_first_loss("skipped", 4 * global_batch), whole.at(5), 1e-6);
  EXPECT_GT(std::abs(continued_first_loss("from_zero", 0) - whole.at(5)), 1e-4);
}

TEST(Trainer, NegativeSkipSamplesIsRefused) {
  ScratchDirectory scratch("sy_trainer");
  absl::StatusOr<TrainConfig> config =
      parse_config(tiny_run_yaml(scratch.path()), "trainer_test.yaml", {"training.skip_samples=-1"});
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("training.skip_samples"), std::string::npos) << config.status();
}

TEST(Trainer, ExistingCheckpointsNeedResumeAndStayUntouched) {
  ScratchDirectory scratch("sy_trainer");
  const std::string yaml = prepare_tiny_run(scratch.path());
  TrainConfig config = config_for(yaml, scratch.file("run"), {"training.steps=2"});
  ASSERT_TRUE(train(config, {}).ok());
  const std::string metrics_before = bytes_of(scratch.path() / "run" / "metrics.jsonl");
  absl::StatusOr<TrainSummary> again = train(config, {});
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.status().message().find("--resume"), std::string::npos) << again.status();
  EXPECT_EQ(bytes_of(scratch.path() / "run" / "metrics.jsonl"), metrics_before);
}

TEST(Trainer, MissingDataFileFailsBeforeWritingAnything) {
  ScratchDirectory scratch("sy_trainer");
  const std::string yaml = prepare_tiny_run(scratch.path());
  TrainConfig config = config_for(yaml, scratch.file("run"));
  config.data.sources[0].prefix = scratch.file("no_such_corpus");
  absl::StatusOr<TrainSummary> summary = train(config, {});
  ASSERT_FALSE(summary.ok());
  EXPECT_NE(summary.status().message().find("no_such_corpus"), std::string::npos) << summary.status();
  EXPECT_FALSE(fs::exists(scratch.path() / "run"));
}

TEST(Trainer, VocabularyLargerThanTheModelIsRefused) {
  ScratchDirectory scratch("sy_trainer");
  const std::string yaml = prepare_tiny_run(scratch.path());
  TrainConfig config = config_for(yaml, scratch.file("run"), {"model.vocab_size=100"});
  absl::StatusOr<TrainSummary> summary = train(config, {});
  ASSERT_FALSE(summary.ok());
  EXPECT_NE(summary.status().message().find("model.vocab_size (100)"), std::string::npos) << summary.status();
  EXPECT_FALSE(fs::exists(scratch.path() / "run"));
}

TEST(Trainer, CorruptedCheckpointFailsToResumeNamingTheFile) {
  ScratchDirectory scratch("sy_trainer");
  const std::string yaml = prepare_tiny_run(scratch.path());
  TrainConfig config = config_for(yaml, scratch.file("run"), {"training.steps=2"});
  ASSERT_TRUE(train(config, {}).ok());
  const fs::path model = scratch.path() / "run" / "checkpoints" / "step_00000002" / "model.safetensors";
  fs::resize_file(model, fs::file_size(model) / 2);
  TrainOptions resume;
  resume.resume = true;
  absl::StatusOr<TrainSummary> summary = train(config_for(yaml, scratch.file("run"), {"training.steps=4"}), resume);
  ASSERT_FALSE(summary.ok());
  EXPECT_NE(summary.status().message().find("model.safetensors"), std::string::npos) << summary.status();
}

}  // namespace
}  // namespace sy::testing
