// The sampler: cached greedy decoding equals recomputing the whole sequence, sampling is
// reproducible by seed, top-k and temperature shape the draws, and generation stops where
// it should. Also the UTF-8 streaming of decoded bytes and `switchyard generate` on a
// checkpoint saved here.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/autograd/grad_mode.h"
#include "core/ops/ops.h"
#include "data/tokenizer.h"
#include "launch/checkpoint.h"
#include "launch/config.h"
#include "launch/generate.h"
#include "moe/model.h"
#include "optim/optimizer.h"
#include "tests/support/scratch_directory.h"

namespace sy::testing {
namespace {

// A small MoE model (layer 0 dense, layer 1 MoE with a shared expert), GQA, max_seq_len 24.
// init_std 0.15 so the next-token distribution is far from uniform and greedy has clear winners.
ModelConfig moe_config() {
  ModelConfig c;
  c.vocab_size = 64;
  c.hidden_size = 32;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.ffn_size = 48;
  c.max_seq_len = 24;
  c.init_std = 0.15;
  c.seed = 21;
  c.first_k_dense_layers = 1;
  c.moe.num_experts = 8;
  c.moe.top_k = 2;
  c.moe.expert_ffn_size = 16;
  c.moe.num_shared_experts = 1;
  c.moe.shared_expert_ffn_size = 16;
  return c;
}

const std::vector<int32_t> kPrompt = {3, 14, 15, 9, 26};

// Greedy decoding the slow way: the whole sequence through Transformer::forward each step.
std::vector<int32_t> greedy_by_recomputing(Transformer& model, std::vector<int32_t> sequence, int64_t count) {
  std::vector<int32_t> generated;
  for (int64_t step = 0; step < count; ++step) {
    const int64_t T = static_cast<int64_t>(sequence.size());
    Tensor tokens = Tensor::from_vector(sequence, {1, T}, DType::kI64);
    std::vector<float> last = model.forward(tokens).logits.select(1, T - 1).to_vector<float>();
    const int32_t token = static_cast<int32_t>(std::max_element(last.begin(), last.end()) - last.begin());
    generated.push_back(token);
    sequence.push_back(token);
  }
  return generated;
}

TEST(Generate, GreedyWithCacheEqualsRecomputingTheSequence) {
  Transformer model(moe_config());
  model.eval();
  SamplingOptions options{.temperature = 0, .max_new_tokens = 12};
  std::vector<int32_t> cached = generate(model, kPrompt, options);
  ASSERT_EQ(cached.size(), 12u);
  EXPECT_EQ(cached, greedy_by_recomputing(model, kPrompt, 12));
}

TEST(Generate, TopKOneIsGreedy) {
  Transformer model(moe_config());
  model.eval();
  std::vector<int32_t> greedy = generate(model, kPrompt, {.temperature = 0, .max_new_tokens = 12});
  std::vector<int32_t> top1 = generate(model, kPrompt, {.temperature = 1.5, .top_k = 1, .seed = 9, .max_new_tokens = 12});
  EXPECT_EQ(top1, greedy);
}

TEST(Generate, SameSeedSameSampleOtherSeedOtherSample) {
  Transformer model(moe_config());
  model.eval();
  const SamplingOptions options{.temperature = 1.0, .top_k = 0, .seed = 7, .max_new_tokens = 16};
  std::vector<int32_t> first = generate(model, kPrompt, options);
  std::vector<int32_t> again = generate(model, kPrompt, options);
  SamplingOptions other = options;
  other.seed = 8;
  std::vector<int32_t> different = generate(model, kPrompt, other);
  EXPECT_EQ(first, again);
  EXPECT_NE(first, different);
  // Sampling at temperature 1 over the whole vocabulary does not just repeat greedy.
  EXPECT_NE(first, generate(model, kPrompt, {.temperature = 0, .max_new_tokens = 16}));
}

TEST(Generate, OnTokenSeesEachTokenAsReturned) {
  Transformer model(moe_config());
  model.eval();
  std::vector<int32_t> seen;
  std::vector<int32_t> generated =
      generate(model, kPrompt, {.seed = 3, .max_new_tokens = 10}, [&](int32_t token) { seen.push_back(token); });
  EXPECT_EQ(generated.size(), 10u);
  EXPECT_EQ(seen, generated);
}

TEST(Generate, StopsBeforeTheEndOfTextToken) {
  Transformer model(moe_config());
  model.eval();
  std::vector<int32_t> greedy = generate(model, kPrompt, {.temperature = 0, .max_new_tokens = 12});
  // Take the fourth greedy token as end-of-text: generation ends at its first occurrence.
  const int32_t stop = greedy[3];
  const auto first = std::find(greedy.begin(), greedy.end(), stop);
  std::vector<int32_t> expected(greedy.begin(), first);
  std::vector<int32_t> seen;
  std::vector<int32_t> stopped = generate(model, kPrompt, {.temperature = 0, .max_new_tokens = 12, .end_of_text = stop},
                                          [&](int32_t token) { seen.push_back(token); });
  EXPECT_EQ(stopped, expected);
  EXPECT_EQ(seen, expected);
}

TEST(Generate, StopsWhenTheSequenceFillsMaxSeqLen) {
  Transformer model(moe_config());
  model.eval();
  // 5 prompt tokens + 19 new = 24 = max_seq_len, although 100 were asked for.
  std::vector<int32_t> generated = generate(model, kPrompt, {.temperature = 0, .max_new_tokens = 100});
  EXPECT_EQ(generated.size(), 19u);
  EXPECT_EQ(generated, greedy_by_recomputing(model, kPrompt, 19));
  // A prompt that already fills the model leaves no room; one longer fails naming the limit.
  std::vector<int32_t> full(24, 1);
  EXPECT_TRUE(generate(model, full, {.max_new_tokens = 5}).empty());
  std::vector<int32_t> too_long(25, 1);
  try {
    generate(model, too_long, {});
    ADD_FAILURE() << "no error for a 25-token prompt";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("25 tokens exceed max_seq_len 24"), std::string::npos) << error.what();
  }
}

TEST(Generate, StopsAfterMaxNewTokens) {
  Transformer model(moe_config());
  model.eval();
  EXPECT_EQ(generate(model, kPrompt, {.max_new_tokens = 3}).size(), 3u);
  EXPECT_TRUE(generate(model, kPrompt, {.max_new_tokens = 0}).empty());
}

// Logits {3, 2, 1, 0}: top_k 2 leaves ids 0 and 1, drawn with odds e^(1/t) : 1.
TEST(SampleToken, TopKAndTemperatureShapeTheDraws) {
  const std::vector<float> logits = {3, 2, 1, 0};
  for (double temperature : {1.0, 0.5}) {
    Generator generator(42);
    const SamplingOptions options{.temperature = temperature, .top_k = 2};
    std::vector<int> counts(4, 0);
    const int draws = 4000;
    for (int i = 0; i < draws; ++i) ++counts[sample_token(logits, options, generator)];
    EXPECT_EQ(counts[2] + counts[3], 0) << "temperature " << temperature;
    const double odds = std::exp(1.0 / temperature);
    // Binomial standard deviation of the share is at most 0.008 for 4000 draws.
    EXPECT_NEAR(counts[0] / static_cast<double>(draws), odds / (odds + 1), 0.03) << "temperature " << temperature;
  }
  // Without top-k every id is drawn at temperature 1.
  Generator generator(1);
  std::vector<int> counts(4, 0);
  for (int i = 0; i < 4000; ++i) ++counts[sample_token(logits, {.temperature = 1.0, .top_k = 0}, generator)];
  for (int id = 0; id < 4; ++id) EXPECT_GT(counts[id], 0) << id;
}

TEST(SampleToken, GreedyTakesTheLowestIdAmongEqualMaxima) {
  Generator generator(0);
  EXPECT_EQ(sample_token({1, 5, 2, 5}, {.temperature = 0}, generator), 1);
  EXPECT_EQ(sample_token({1, 5, 2, 5}, {.temperature = 0.7, .top_k = 1}, generator), 1);
}

TEST(Utf8Stream, HoldsBackACharacterSplitAcrossTokens) {
  Utf8Stream stream;
  // "aé€😀" where é is C3 A9, € is E2 82 AC and 😀 is F0 9F 98 80, cut mid-character.
  EXPECT_EQ(stream.push("a\xC3"), "a");
  EXPECT_EQ(stream.push("\xA9\xE2\x82"), "\xC3\xA9");
  EXPECT_EQ(stream.push("\xAC\xF0"), "\xE2\x82\xAC");
  EXPECT_EQ(stream.push("\x9F\x98"), "");
  EXPECT_EQ(stream.push("\x80!"), "\xF0\x9F\x98\x80!");
  EXPECT_EQ(stream.finish(), "");
}

TEST(Utf8Stream, PassesInvalidBytesAndReturnsAnUnfinishedTailAtTheEnd) {
  Utf8Stream stream;
  EXPECT_EQ(stream.push("\x80\x80\x80\x80x"), "\x80\x80\x80\x80x");  // stray continuation bytes
  EXPECT_EQ(stream.push("\xFF"), "\xFF");                             // never a lead byte
  EXPECT_EQ(stream.push("b\xE2\x82"), "b");
  EXPECT_EQ(stream.finish(), "\xE2\x82");
  EXPECT_EQ(stream.push("c"), "c");
}

// ---- switchyard generate ----

const std::vector<std::string> kCorpus = {
    "the quick brown fox jumps over the lazy dog. the dog sleeps; the fox runs on.",
    "a stitch in time saves nine, and a penny saved is a penny earned.",
    "caf\xC3\xA9 cr\xC3\xA8me br\xC3\xBBl\xC3\xA9" "e \xE2\x82\xAC" "3 \xF0\x9F\x98\x80 na\xC3\xAFve",
};

// A checkpoint of a small MoE model whose vocabulary (320) is padded past its tokenizer's (300),
// with weights changed after initialization so that only loading them reproduces its output.
class GenerateCommand : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(scratch_.ok());
    absl::StatusOr<Tokenizer> trained = Tokenizer::train(kCorpus, 300);
    ASSERT_TRUE(trained.ok()) << trained.status();
    tokenizer_ = std::make_unique<Tokenizer>(std::move(*trained));
    ASSERT_TRUE(tokenizer_->save(scratch_.file("tokenizer")).ok());

    config_.model = moe_config();
    config_.model.vocab_size = 320;
    config_.model.max_seq_len = 32;
    config_.data.tokenizer = scratch_.file("tokenizer");
    config_.data.sources = {DataSource{.prefix = scratch_.file("corpus"), .weight = 1.0}};
    config_.data.seq_length = 16;
    root_ = scratch_.file("checkpoints");
    save(config_);
  }

  void save(const TrainConfig& config) {
    model_ = std::make_unique<Transformer>(config.model);
    {
      NoGradGuard no_grad;
      for (auto& [name, parameter] : model_->named_parameters()) parameter.mul_(1.7);
    }
    std::unique_ptr<Optimizer> optimizer = make_optimizer(config.optimizer, model_->named_parameters());
    absl::Status saved = save_checkpoint(root_, *model_, *optimizer, TrainState{.step = 10}, config_to_yaml(config), 1);
    ASSERT_TRUE(saved.ok()) << saved;
    model_->eval();
  }

  // generate_command's output and status.
  std::pair<std::string, absl::Status> run(const std::vector<std::string>& args) {
    std::FILE* out = std::tmpfile();
    absl::Status status = generate_command(args, out);
    std::string text(static_cast<size_t>(std::ftell(out)), '\0');
    std::rewind(out);
    text.resize(std::fread(text.data(), 1, text.size(), out));
    std::fclose(out);
    return {text, status};
  }

  // What the command should print: the prompt, then the decoded continuation and a newline.
  std::string expected(const std::string& prompt, SamplingOptions options) {
    options.end_of_text = tokenizer_->end_of_text();
    options.vocab_limit = tokenizer_->vocab_size();
    std::vector<int32_t> tokens = tokenizer_->encode(prompt);
    if (tokens.empty()) tokens = {tokenizer_->end_of_text()};
    return prompt + tokenizer_->decode(generate(*model_, tokens, options)) + "\n";
  }

  ScratchDirectory scratch_{"sy_generate"};
  std::unique_ptr<Tokenizer> tokenizer_;
  TrainConfig config_;
  std::string root_;
  std::unique_ptr<Transformer> model_;
};

TEST_F(GenerateCommand, GreedyPrintsThePromptAndTheLoadedModelsContinuation) {
  auto [text, status] = run({"--checkpoint", root_, "--prompt", "the quick", "--temperature", "0",
                             "--max-new-tokens", "12"});
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(text, expected("the quick", {.temperature = 0, .max_new_tokens = 12}));
  EXPECT_GT(text.size(), std::string("the quick\n").size());
  // A freshly initialized model (no weights loaded) continues differently.
  Transformer fresh(config_.model);
  fresh.eval();
  std::vector<int32_t> fresh_tokens =
      generate(fresh, tokenizer_->encode("the quick"),
               {.temperature = 0, .max_new_tokens = 12, .end_of_text = tokenizer_->end_of_text(), .vocab_limit = 300});
  EXPECT_NE(text, "the quick" + tokenizer_->decode(fresh_tokens) + "\n");
}

TEST_F(GenerateCommand, SeededSamplingFromTheStepDirectoryWithEqualsFlags) {
  const std::string step = (std::filesystem::path(root_) / "step_00000010").string();
  const std::vector<std::string> args = {"--checkpoint=" + step, "--prompt=a penny", "--temperature=1.3",
                                         "--top-k=50", "--seed=17", "--max-new-tokens=20"};
  auto [text, status] = run(args);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(text, expected("a penny", {.temperature = 1.3, .top_k = 50, .seed = 17, .max_new_tokens = 20}));
  EXPECT_EQ(run(args).first, text);
}

TEST_F(GenerateCommand, AnEmptyPromptStartsANewDocument) {
  auto [text, status] = run({"--checkpoint", root_, "--prompt", "", "--seed", "3", "--max-new-tokens", "10"});
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(text, expected("", {.seed = 3, .max_new_tokens = 10}));
}

void expect_error(const std::pair<std::string, absl::Status>& result, const std::string& part) {
  const auto& [text, status] = result;
  EXPECT_FALSE(status.ok());
  const std::string message(status.message());
  EXPECT_NE(message.find(part), std::string::npos) << "'" << message << "' lacks '" << part << "'";
  EXPECT_EQ(text, "") << "an error printed text first";
}

TEST_F(GenerateCommand, FlagMistakesNameTheFlag) {
  expect_error(run({"--prompt", "x"}), "--checkpoint DIR is required");
  expect_error(run({"--checkpoint", root_}), "--prompt TEXT is required");
  expect_error(run({"--checkpoint", root_, "--prompt", "x", "--temprature", "1"}), "unknown argument '--temprature'");
  expect_error(run({"--checkpoint", root_, "--prompt", "x", "--temperature", "-1"}),
               "--temperature expects a number >= 0, got '-1'");
  expect_error(run({"--checkpoint", root_, "--prompt", "x", "--top-k", "many"}),
               "--top-k expects an integer >= 0, got 'many'");
  expect_error(run({"--checkpoint", root_, "--prompt", "x", "--max-new-tokens"}), "--max-new-tokens expects a value");
  EXPECT_EQ(run_generate({"--checkpoint", root_, "--prompt", "x", "--seed", "-3"}), 1);
}

TEST_F(GenerateCommand, AMissingCheckpointNamesThePath) {
  const std::string missing = scratch_.file("no_such_run");
  expect_error(run({"--checkpoint", missing, "--prompt", "x"}), missing);
}

TEST_F(GenerateCommand, AMissingTokenizerNamesTheKeyAndTheFile) {
  TrainConfig moved = config_;
  moved.data.tokenizer = scratch_.file("tokenizer_elsewhere");
  std::filesystem::remove_all(root_);
  save(moved);
  expect_error(run({"--checkpoint", root_, "--prompt", "x"}), "data.tokenizer");
  expect_error(run({"--checkpoint", root_, "--prompt", "x"}), "tokenizer_elsewhere");
}

TEST_F(GenerateCommand, APromptThatFillsMaxSeqLenIsRefused) {
  std::string prompt;
  for (int i = 0; i < 40; ++i) prompt += " fox";
  expect_error(run({"--checkpoint", root_, "--prompt", prompt}), "max_seq_len of 32");
}

}  // namespace
}  // namespace sy::testing
