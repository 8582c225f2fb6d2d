#include "tests/launch/tiny_run_support.h"

#include <sstream>
#include <vector>

#include <gtest/gtest.h>

#include "data/indexed_dataset.h"
#include "data/tokenizer.h"

namespace sy::testing {
namespace fs = std::filesystem;
namespace {

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

}  // namespace

std::string prepare_tiny_run(const fs::path& root) {
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
  return tiny_run_yaml(root);
}

std::string tiny_run_yaml(const fs::path& root) {
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

}  // namespace sy::testing
