// The sampler (prefill the prompt into a KV cache, then one token per forward) and the
// `switchyard generate` command.
#include "launch/generate.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <optional>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/check.h"
#include "core/tensor.h"
#include "data/tokenizer.h"
#include "launch/checkpoint.h"
#include "launch/config.h"

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
  const int64_t size = static_cast<int64_t>(logits.size());
  const int64_t V = options.vocab_limit > 0 ? std::min(options.vocab_limit, size) : size;
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

namespace {

constexpr char kUsage[] =
    "usage: switchyard generate --checkpoint DIR --prompt TEXT [--max-new-tokens N]\n"
    "                           [--temperature T] [--top-k K] [--seed S]\n"
    "  --checkpoint DIR    a checkpoint step directory, or a checkpoints folder (its `latest`)\n"
    "  --prompt TEXT       the text to continue ('' starts a new document)\n"
    "  --max-new-tokens N  stop after N tokens (default 100; also at end-of-text or max_seq_len)\n"
    "  --temperature T     divides the logits; 0 is greedy (default 0.8)\n"
    "  --top-k K           draw among the K most likely tokens; 0 for all (default 40)\n"
    "  --seed S            seed of the sampling stream (default 0)\n";

struct GenerateArgs {
  bool help = false;
  std::string checkpoint;
  std::optional<std::string> prompt;
  SamplingOptions sampling;
};

absl::StatusOr<GenerateArgs> parse_generate_args(const std::vector<std::string>& args) {
  GenerateArgs parsed;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string flag = args[i];
    std::optional<std::string> inline_value;  // --flag=value
    if (const size_t equals = flag.find('='); flag.starts_with("--") && equals != std::string::npos) {
      inline_value = flag.substr(equals + 1);
      flag.resize(equals);
    }
    if (flag == "--help" || flag == "-h") {
      parsed.help = true;
      continue;
    }
    auto value = [&]() -> absl::StatusOr<std::string> {
      if (inline_value) return *inline_value;
      if (i + 1 >= args.size()) return absl::InvalidArgumentError(absl::StrCat(flag, " expects a value"));
      return args[++i];
    };
    auto count = [&](int64_t* out) -> absl::Status {
      absl::StatusOr<std::string> text = value();
      if (!text.ok()) return text.status();
      if (!absl::SimpleAtoi(*text, out) || *out < 0) {
        return absl::InvalidArgumentError(absl::StrCat(flag, " expects an integer >= 0, got '", *text, "'"));
      }
      return absl::OkStatus();
    };
    absl::Status status;
    if (flag == "--checkpoint" || flag == "--prompt") {
      absl::StatusOr<std::string> text = value();
      if (!text.ok()) return text.status();
      if (flag == "--checkpoint") {
        parsed.checkpoint = *text;
      } else {
        parsed.prompt = *text;
      }
    } else if (flag == "--max-new-tokens") {
      status = count(&parsed.sampling.max_new_tokens);
    } else if (flag == "--top-k") {
      status = count(&parsed.sampling.top_k);
    } else if (flag == "--temperature") {
      absl::StatusOr<std::string> text = value();
      if (!text.ok()) return text.status();
      double& temperature = parsed.sampling.temperature;
      if (!absl::SimpleAtod(*text, &temperature) || !std::isfinite(temperature) || temperature < 0) {
        return absl::InvalidArgumentError(absl::StrCat("--temperature expects a number >= 0, got '", *text, "'"));
      }
    } else if (flag == "--seed") {
      absl::StatusOr<std::string> text = value();
      if (!text.ok()) return text.status();
      if (!absl::SimpleAtoi(*text, &parsed.sampling.seed)) {
        return absl::InvalidArgumentError(absl::StrCat("--seed expects an unsigned integer, got '", *text, "'"));
      }
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown argument '", args[i],
                                                     "' (expected --checkpoint, --prompt, --max-new-tokens, "
                                                     "--temperature, --top-k, --seed or --help)"));
    }
    if (!status.ok()) return status;
  }
  if (parsed.help) return parsed;
  if (parsed.checkpoint.empty()) return absl::InvalidArgumentError("--checkpoint DIR is required");
  if (!parsed.prompt) {
    return absl::InvalidArgumentError("--prompt TEXT is required (--prompt '' starts a new document)");
  }
  return parsed;
}

void write(std::FILE* out, const std::string& text) {
  std::fwrite(text.data(), 1, text.size(), out);
  std::fflush(out);
}

}  // namespace

absl::Status generate_command(const std::vector<std::string>& args, std::FILE* out) {
  absl::StatusOr<GenerateArgs> parsed = parse_generate_args(args);
  if (!parsed.ok()) return parsed.status();
  if (parsed->help) {
    write(out, kUsage);
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> step = resolve_checkpoint(parsed->checkpoint);
  if (!step.ok()) return step.status();
  absl::StatusOr<std::string> yaml = read_checkpoint_config(*step);
  if (!yaml.ok()) return yaml.status();
  // Paths in a saved config are as the trainer resolved them (absolute, or relative to the
  // directory it ran in), so they resolve against the current directory.
  const std::string config_name = (std::filesystem::path(*step) / "config.yaml").string();
  absl::StatusOr<TrainConfig> config = parse_config(*yaml, config_name, {}, ".");
  if (!config.ok()) return config.status();
  const ModelConfig& model_config = config->model;

  if (config->data.tokenizer.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(config_name, ": data.tokenizer is empty; generate needs the model's tokenizer"));
  }
  absl::StatusOr<Tokenizer> tokenizer = Tokenizer::load(config->data.tokenizer);
  if (!tokenizer.ok()) {
    return absl::Status(tokenizer.status().code(), absl::StrCat("the tokenizer named by data.tokenizer in ", config_name,
                                                                ": ", tokenizer.status().message()));
  }
  if (tokenizer->vocab_size() > model_config.vocab_size) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the tokenizer ", config->data.tokenizer, " has ", tokenizer->vocab_size(),
        " tokens, more than the model's vocab_size of ", model_config.vocab_size, " (", config_name, ")"));
  }

  std::vector<int32_t> prompt = tokenizer->encode(*parsed->prompt);
  if (prompt.empty()) prompt = {tokenizer->end_of_text()};
  if (static_cast<int64_t>(prompt.size()) >= model_config.max_seq_len) {
    return absl::InvalidArgumentError(absl::StrCat("--prompt is ", prompt.size(),
                                                   " tokens, which leaves no room to generate within the model's "
                                                   "max_seq_len of ", model_config.max_seq_len));
  }

  Transformer model(model_config);
  absl::StatusOr<TrainState> loaded = load_checkpoint(*step, model, /*optimizer=*/nullptr);
  if (!loaded.ok()) return loaded.status();
  model.eval();

  SamplingOptions options = parsed->sampling;
  options.end_of_text = tokenizer->end_of_text();
  options.vocab_limit = tokenizer->vocab_size();
  write(out, *parsed->prompt);
  Utf8Stream stream;
  generate(model, prompt, options, [&](int32_t token) { write(out, stream.push(tokenizer->decode({token}))); });
  write(out, stream.finish() + "\n");
  return absl::OkStatus();
}

int run_generate(const std::vector<std::string>& args) {
  absl::Status status;
  try {
    status = generate_command(args, stdout);
  } catch (const Error& error) {
    status = absl::InternalError(error.what());
  }
  if (status.ok()) return 0;
  std::fprintf(stderr, "switchyard generate: %s\n", std::string(status.message()).c_str());
  return 1;
}

}  // namespace sy
