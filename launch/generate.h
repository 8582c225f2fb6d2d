// Sampling text from a trained model with a KV cache (temperature, top-k, a seeded Philox
// stream), and `switchyard generate`, which streams the decoded text to stdout.
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "core/random.h"
#include "moe/model.h"

namespace sy {

struct SamplingOptions {
  double temperature = 0.8;      // divides the logits; 0 = greedy (argmax, lowest id on ties)
  int64_t top_k = 40;            // draw among the k largest logits only (0: all V)
  uint64_t seed = 0;             // seeds the Philox stream: same model, prompt and seed, same text
  int64_t max_new_tokens = 100;
  int32_t end_of_text = -1;      // generation stops when this token is drawn (-1: none)
  int64_t vocab_limit = 0;       // draw only ids below this, e.g. the tokenizer's size when the
                                 // model's vocabulary is padded beyond it (0: all V)
};

// Continues `prompt` (at least one token) and returns the new tokens, each also passed to
// `on_token` as it is drawn. Stops after max_new_tokens, when end_of_text is drawn (which is
// neither returned nor passed on), or when the sequence fills max_seq_len. Runs the model as
// it is: call model.eval() first.
std::vector<int32_t> generate(Transformer& model, const std::vector<int32_t>& prompt,
                              const SamplingOptions& options, std::function<void(int32_t)> on_token = {});

// One draw from logits (V) under `options` (temperature, top_k), two values of `generator`'s
// stream per draw (none when greedy).
int32_t sample_token(const std::vector<float>& logits, const SamplingOptions& options, Generator& generator);

// Cuts a byte stream into whole UTF-8 characters: a character whose bytes arrive in two
// tokens is held back until it is complete, so that a terminal never shows half of it.
class Utf8Stream {
 public:
  // Appends `bytes` and returns what can be shown: everything pending except an unfinished
  // character at the end. Invalid bytes pass through as they are.
  std::string push(std::string_view bytes);
  // Whatever is still held back (an unfinished character at the end of the text).
  std::string finish();

 private:
  std::string pending_;
};

// `switchyard generate --checkpoint DIR --prompt TEXT [--max-new-tokens N] [--temperature T]
// [--top-k K] [--seed S]`: loads the checkpoint (DIR is a step directory or a checkpoints
// folder with a `latest` pointer), its config and the tokenizer the config names, writes the
// prompt and then the sampled text to `out` as it is drawn, and a newline at the end. An empty
// prompt starts a new document (the end-of-text token). Mistakes in the flags, the checkpoint
// or the tokenizer come back as a Status before anything is written.
absl::Status generate_command(const std::vector<std::string>& args, std::FILE* out);
// The CLI entry: generate_command to stdout; prints `switchyard generate: <message>` and
// returns 1 on error.
int run_generate(const std::vector<std::string>& args);

}  // namespace sy
