// The trainer end to end on a tiny corpus: it learns, resuming is bit-exact, and bad inputs
// stop it before anything is written.
#include "launch/trainer.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "data/indexed_dataset.h"
#include "data/tokenizer.h"
#include "launch/config.h"
#include "tests/support/scratch_directory.h"

namespace sy::testing {
namespace {

namespace fs = std::filesystem;

// A few hundred short English documents: enough for a tokenizer and a split.
std::vector<std::string> corpus() {
  const std::vector<std::string> subjects = {"The cat", "A dog", "My friend", "The old man", "Every child"};
  const std::vector<std::string> verbs = {"likes", "sees", "finds", "wants", "keeps"};
  const std::vector<std::string> objects = {"the red ball.", "a small box.", "the green tree.", "an apple.",
                                            "the blue sea."};
  std::vector<std::string> documents;
  for (size_t i = 0; i < 300; ++i) {
    documents.push_back(subjects[i % 5] + " " + verbs[(i / 5) % 5] + " " + objects[(i / 25) % 5] + " " +
                        subjects[(i * 7) % 5] + " " + verbs[(i * 3) % 5] + " " + objects[(i * 11) % 5]);
  }
  return documents;
}

// Writes tokenizer/ and corpus.{bin,idx} into `root`; returns the config YAML for them.
std::string prepare(const fs::path& root) {
  std::vector<std::string> documents = corpus();
  absl::StatusOr<Tokenizer> tokenizer = Tokenizer::train(documents, 320);
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_TRUE(tokenizer->save((root / "tokenizer").string()).ok());
  auto writer = IndexedDatasetWriter::create((root / "corpus").string(), tokenizer->vocab_size());
  EXPECT_TRUE(writer.ok()) << writer.status();
  for (const std::string& document : documents) {
    std::vector<int32_t> tokens = tokenizer->encode(document);
    tokens.push_back(tokenizer->end_of_text());
    EXPECT_TRUE((*writer)->add_document(tokens).ok());
  }
  EXPECT_TRUE((*writer)->finish().ok());
  std::ostringstream yaml;
  yaml << "model: {vocab_size: 320, hidden_size: 32, num_layers: 2, num_heads: 4, num_kv_heads: 2, ffn_size: 64,"
          " max_seq_len: 32, first_k_dense_layers: 1}\n"
          "moe: {num_experts: 4, top_k: 2, expert_ffn_size: 32, num_shared_experts: 1, shared_expert_ffn_size: 32,"
          " global_load_balance_coeff: 0.01, z_loss_coeff: 0.001, expert_bias: true}\n"
          "data: {tokenizer: "
       << (root / "tokenizer").string() << ", sources: [{prefix: " << (root / "corpus").string()
       << ", weight: 1.0}], seq_length: 16, split: \"90,10,0\"}\n"
          "optimizer: {lr: 0.01, weight_decay: 0.01}\n"
          "schedule: {type: cosine, warmup_steps: 2}\n"
          "training: {micro_batch_size: 4, global_batch_size: 8, steps: 8, eval_interval: 4, eval_batches: 2,"
          " peak_flops: 1.0e11}\n"
          "logging: {tensorboard: false, progress: none}\n";
  return yaml.str();
}

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
  const std::string yaml = prepare(scratch.path());
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
  const std::string yaml = prepare(scratch.path());
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

TEST(Trainer, ExistingCheckpointsNeedResumeAndStayUntouched) {
  ScratchDirectory scratch("sy_trainer");
  const std::string yaml = prepare(scratch.path());
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
  const std::string yaml = prepare(scratch.path());
  TrainConfig config = config_for(yaml, scratch.file("run"));
  config.data.sources[0].prefix = scratch.file("no_such_corpus");
  absl::StatusOr<TrainSummary> summary = train(config, {});
  ASSERT_FALSE(summary.ok());
  EXPECT_NE(summary.status().message().find("no_such_corpus"), std::string::npos) << summary.status();
  EXPECT_FALSE(fs::exists(scratch.path() / "run"));
}

TEST(Trainer, VocabularyLargerThanTheModelIsRefused) {
  ScratchDirectory scratch("sy_trainer");
  const std::string yaml = prepare(scratch.path());
  TrainConfig config = config_for(yaml, scratch.file("run"), {"model.vocab_size=100"});
  absl::StatusOr<TrainSummary> summary = train(config, {});
  ASSERT_FALSE(summary.ok());
  EXPECT_NE(summary.status().message().find("model.vocab_size (100)"), std::string::npos) << summary.status();
  EXPECT_FALSE(fs::exists(scratch.path() / "run"));
}

TEST(Trainer, CorruptedCheckpointFailsToResumeNamingTheFile) {
  ScratchDirectory scratch("sy_trainer");
  const std::string yaml = prepare(scratch.path());
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
