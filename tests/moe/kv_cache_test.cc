// Incremental decoding with a KV cache: prefilling a prompt and then feeding tokens one (or a
// few) at a time gives the full-sequence forward's logits at every position.
#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/ops/ops.h"
#include "core/random.h"
#include "moe/model.h"

namespace sy::testing {
namespace {

// V 64, C 32, L 3, H 4, Hkv 2 (D 8), max_seq_len 16. A larger init_std than training uses
// so that attention is far from uniform and logits are O(1), which makes 1e-5 a tight bound.
ModelConfig dense_config() {
  ModelConfig c;
  c.vocab_size = 64;
  c.hidden_size = 32;
  c.num_layers = 3;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.ffn_size = 48;
  c.max_seq_len = 16;
  c.init_std = 0.15;
  c.seed = 11;
  return c;
}

// Layers 1 and 2 MoE (E 8, top-2, fine-grained F 16, a gated shared expert), multi-query
// attention (Hkv 1), tied embeddings, router jitter on (eval() turns it off).
ModelConfig moe_config() {
  ModelConfig c = dense_config();
  c.num_kv_heads = 1;
  c.tie_embeddings = true;
  c.first_k_dense_layers = 1;
  c.moe.num_experts = 8;
  c.moe.top_k = 2;
  c.moe.expert_ffn_size = 16;
  c.moe.num_shared_experts = 1;
  c.moe.shared_expert_ffn_size = 16;
  c.moe.shared_expert_gate = true;
  c.moe.input_jitter = 0.1;
  return c;
}

Tensor random_tokens(int64_t B, int64_t T, int64_t V, uint64_t seed) {
  Generator generator(seed);
  std::vector<int64_t> ids(static_cast<size_t>(B * T));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = philox_uint32(generator.state(), i) % V;
  return Tensor::from_vector(ids, {B, T}, DType::kI64);
}

double max_abs_difference(const Tensor& a, const Tensor& b) {
  std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  EXPECT_EQ(x.size(), y.size());
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) worst = std::max(worst, std::abs(x[i] - y[i]));
  return worst;
}

// Feeds `tokens` (B, T) through the cache in chunks of the given lengths (summing to T) and
// compares each chunk's logits with the full forward's at the same positions.
void expect_cached_matches_full(const ModelConfig& config, const std::vector<int64_t>& chunks) {
  Transformer model(config);
  model.eval();
  const int64_t B = 2, T = config.max_seq_len;
  Tensor tokens = random_tokens(B, T, config.vocab_size, 3);
  Tensor full = model.forward(tokens).logits;  // (B, T, V)
  double full_scale = 0;
  for (double value : full.to_vector<double>()) full_scale = std::max(full_scale, std::abs(value));
  EXPECT_GT(full_scale, 0.5) << "logits too small for the tolerance to mean anything";

  KvCache cache;
  int64_t position = 0;
  for (int64_t length : chunks) {
    Tensor logits = model.forward_cached(tokens.narrow(1, position, length), &cache);
    ASSERT_EQ(logits.shape(), (Shape{B, length, config.vocab_size}));
    EXPECT_FALSE(logits.requires_grad());
    EXPECT_LE(max_abs_difference(logits, full.narrow(1, position, length)), 1e-5)
        << "positions [" << position << ", " << position + length << ")";
    position += length;
    EXPECT_EQ(cache.length, position);
  }
  ASSERT_EQ(position, T);
}

std::vector<int64_t> prompt_then_ones(int64_t prompt, int64_t total) {
  std::vector<int64_t> chunks = {prompt};
  for (int64_t i = prompt; i < total; ++i) chunks.push_back(1);
  return chunks;
}

TEST(KvCache, DenseGqaPrefillThenOneTokenAtATimeMatchesFullForward) {
  expect_cached_matches_full(dense_config(), prompt_then_ones(5, 16));
}

TEST(KvCache, DenseGqaOneTokenFromTheStartMatchesFullForward) {
  expect_cached_matches_full(dense_config(), prompt_then_ones(1, 16));
}

TEST(KvCache, DenseGqaUnevenChunksMatchFullForward) {
  expect_cached_matches_full(dense_config(), {3, 4, 1, 6, 2});
}

TEST(KvCache, MoeMqaTiedPrefillThenOneTokenAtATimeMatchesFullForward) {
  expect_cached_matches_full(moe_config(), prompt_then_ones(5, 16));
}

TEST(KvCache, MoeMqaTiedUnevenChunksMatchFullForward) {
  expect_cached_matches_full(moe_config(), {7, 2, 1, 1, 5});
}

TEST(KvCache, MoeFullMultiHeadPrefillThenOneTokenAtATimeMatchesFullForward) {
  ModelConfig config = moe_config();
  config.num_kv_heads = 4;
  expect_cached_matches_full(config, prompt_then_ones(4, 16));
}

TEST(KvCache, ClearStartsANewSequence) {
  Transformer model(dense_config());
  model.eval();
  Tensor first = random_tokens(1, 6, 64, 1), second = random_tokens(1, 4, 64, 2);
  KvCache cache;
  model.forward_cached(first, &cache);
  cache.clear();
  Tensor logits = model.forward_cached(second, &cache);
  EXPECT_EQ(cache.length, 4);
  EXPECT_LE(max_abs_difference(logits, model.forward(second).logits), 1e-5);
}

// The message of the sy::Error that `run` throws.
std::string error_of(const std::function<void()>& run) {
  try {
    run();
  } catch (const Error& error) {
    return error.what();
  }
  return "no error";
}

void expect_contains(const std::string& text, const std::string& part) {
  EXPECT_NE(text.find(part), std::string::npos) << "'" << text << "' lacks '" << part << "'";
}

TEST(KvCache, GrowingPastMaxSeqLenFailsNamingIt) {
  Transformer model(dense_config());
  model.eval();
  KvCache cache;
  model.forward_cached(random_tokens(1, 15, 64, 1), &cache);
  model.forward_cached(random_tokens(1, 1, 64, 2), &cache);  // position 15: the last one
  EXPECT_EQ(cache.length, 16);
  expect_contains(error_of([&] { model.forward_cached(random_tokens(1, 1, 64, 3), &cache); }),
                  "16 cached + 1 new tokens exceed max_seq_len 16");
  EXPECT_EQ(cache.length, 16);  // the failed call changed nothing

  KvCache fresh;
  expect_contains(error_of([&] { model.forward_cached(random_tokens(1, 17, 64, 4), &fresh); }),
                  "0 cached + 17 new tokens exceed max_seq_len 16");
}

TEST(KvCache, ABatchOfAnotherSizeFailsNamingTheShapes) {
  Transformer model(dense_config());
  model.eval();
  KvCache cache;
  model.forward_cached(random_tokens(2, 3, 64, 1), &cache);
  expect_contains(error_of([&] { model.forward_cached(random_tokens(1, 1, 64, 2), &cache); }),
                  "cache (2, 2, 16, 8), expected (1, 2, 16, 8)");
}

}  // namespace
}  // namespace sy::testing
