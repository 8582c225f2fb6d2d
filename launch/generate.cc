// The sampler (prefill the prompt into a KV cache, then one token per forward) and the
// `switchyard generate` command.
#include "launch/generate.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/check.h"
#include "core/tensor.h"

namespace sy {
namespace {

Tensor token_tensor(const std::vector<int32_t>& tokens) {
  return Tensor::from_vector(tokens, {1, static_cast<int64_t>(tokens.size())}, DType::kI64);
}

// Uniform in [0, 1) with 53 random bits from two 32-bit draws.
double uniform_double(Generator& generator) {
  const PhiloxState state = generator.reserve(2);
  const uint64_t high = philox_uint32(state, 0) >> 5, low = philox_uint32(state, 1) >> 6;
  return static_cast<double>((high << 26) | low) * 0x1.0p-53;
}

}  // namespace

int32_t sample_token(const std::vector<float>& logits, const SamplingOptions& options, Generator& generator) {
  const int64_t V = static_cast<int64_t>(logits.size());
  SY_CHECK(V > 0, "sample_token: no logits");
  SY_CHECK(options.temperature >= 0 && options.top_k >= 0, "sample_token: temperature ", options.temperature,
           " and top_k ", options.top_k, " must not be negative");
  for (float logit : logits) SY_CHECK(!std::isnan(logit), "sample_token: NaN logit");
  // Largest logit first, the lower id first among equals, so greedy and top_k = 1 agree.
  auto before = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  if (options.temperature == 0) {
    int32_t best = 0;
    for (int32_t id = 1; id < V; ++id) best = before(id, best) ? id : best;
    return best;
  }
  const int64_t k = options.top_k == 0 ? V : std::min(options.top_k, V);
  std::vector<int32_t> ids(static_cast<size_t>(V));
  std::iota(ids.begin(), ids.end(), 0);
  std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), before);
  const double largest = logits[ids[0]];
  SY_CHECK(std::isfinite(largest), "sample_token: the largest logit is ", largest);
  std::vector<double> weights(static_cast<size_t>(k));
  for (int64_t i = 0; i < k; ++i) weights[i] = std::exp((logits[ids[i]] - largest) / options.temperature);
  const double total = std::accumulate(weights.begin(), weights.end(), 0.0);
  double remaining = uniform_double(generator) * total;
  for (int64_t i = 0; i < k; ++i) {
    remaining -= weights[i];
    if (remaining < 0) return ids[i];
  }
  return ids[k - 1];  // rounding left a sliver past the last weight
}

std::vector<int32_t> generate(Transformer& model, const std::vector<int32_t>& prompt, const SamplingOptions& options,
                              std::function<void(int32_t)> on_token) {
  const int64_t max_len = model.config().max_seq_len, V = model.config().vocab_size;
  SY_CHECK(!prompt.empty(), "generate: the prompt needs at least one token");
  SY_CHECK(static_cast<int64_t>(prompt.size()) <= max_len, "generate: the prompt's ", prompt.size(),
           " tokens exceed max_seq_len ", max_len);
  for (int32_t token : prompt) {
    SY_CHECK(token >= 0 && token < V, "generate: prompt token ", token, " is outside the vocabulary of ", V);
  }
  Generator generator(options.seed);
  KvCache cache;
  std::vector<int32_t> generated;
  Tensor input = token_tensor(prompt);
  int64_t length = static_cast<int64_t>(prompt.size());
  // The next token would sit at position `length`, which must be < max_len.
  while (static_cast<int64_t>(generated.size()) < options.max_new_tokens && length < max_len) {
    Tensor logits = model.forward_cached(input, &cache);  // (1, T, V)
    const int32_t token = sample_token(logits.select(1, logits.size(1) - 1).to_vector<float>(), options, generator);
    if (token == options.end_of_text) break;
    generated.push_back(token);
    if (on_token) on_token(token);
    ++length;
    input = token_tensor({token});
  }
  return generated;
}

std::string Utf8Stream::push(std::string_view bytes) {
  pending_.append(bytes);
  // Find the lead byte of the last character (at most 3 continuation bytes 10xxxxxx follow
  // it) and hold it back if fewer bytes than it announces have arrived.
  size_t keep = pending_.size();
  for (size_t back = 1; back <= std::min<size_t>(4, pending_.size()); ++back) {
    const auto byte = static_cast<unsigned char>(pending_[pending_.size() - back]);
    if ((byte & 0xC0) == 0x80) continue;
    const size_t announced = (byte & 0xE0) == 0xC0 ? 2 : (byte & 0xF0) == 0xE0 ? 3 : (byte & 0xF8) == 0xF0 ? 4 : 1;
    if (announced > back) keep = pending_.size() - back;
    break;
  }
  std::string ready = pending_.substr(0, keep);
  pending_.erase(0, keep);
  return ready;
}

std::string Utf8Stream::finish() {
  std::string rest;
  rest.swap(pending_);
  return rest;
}

}  // namespace sy
