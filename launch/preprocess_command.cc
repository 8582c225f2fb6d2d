// `switchyard preprocess --input F [--input F ...] --output-prefix P --tokenizer DIR ...`: reads
// the flags, trains and saves a tokenizer when asked, then runs data/preprocess. Nothing is
// written before every input and flag has been checked.
#include "launch/preprocess_command.h"

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "data/indexed_dataset.h"
#include "data/preprocess.h"
#include "data/tokenizer.h"

namespace sy {
namespace {

constexpr const char* kUsage =
    "usage: switchyard preprocess --input FILE [--input FILE ...] --output-prefix PREFIX --tokenizer DIR\n"
    "                             [--separator LINE] [--json-key KEY] [--threads N] [--no-progress]\n"
    "                             [--train-tokenizer --vocab-size N [--force]]\n"
    "  --input            plain text (documents end at a line equal to --separator) or JSON lines\n"
    "                     (*.jsonl, *.json: the --json-key string of each line); repeatable\n"
    "  --output-prefix    writes PREFIX.bin and PREFIX.idx (Megatron MMIDIDX v1)\n"
    "  --tokenizer        directory with encoder.json and vocab.bpe (read, or written by --train-tokenizer)\n"
    "  --separator        the line that ends a plain-text document (default: a blank line; fortune files: %)\n"
    "  --json-key         the JSON field holding the text (default: text)\n"
    "  --threads          tokenizing threads (default: every core)\n"
    "  --train-tokenizer  first train a byte-level BPE tokenizer of --vocab-size tokens on the inputs\n"
    "  --force            let --train-tokenizer replace a tokenizer already in DIR\n";

struct Flags {
  PreprocessOptions options;
  std::string tokenizer;
  bool train_tokenizer = false;
  bool force = false;
  int64_t vocab_size = 0;
};

// Parses `--name value` and `--name=value`.
absl::Status parse(const std::vector<std::string>& args, Flags* flags) {
  for (size_t i = 0; i < args.size(); ++i) {
    std::string name = args[i], value;
    bool inline_value = false;
    if (size_t equals = name.find('='); name.starts_with("--") && equals != std::string::npos) {
      value = name.substr(equals + 1);
      name = name.substr(0, equals);
      inline_value = true;
    }
    auto take_value = [&]() -> absl::Status {
      if (inline_value) return absl::OkStatus();
      if (i + 1 >= args.size()) return absl::InvalidArgumentError(absl::StrCat(name, ": expected a value"));
      value = args[++i];
      return absl::OkStatus();
    };
    auto take_count = [&](int64_t minimum, int64_t* out) -> absl::Status {
      if (absl::Status status = take_value(); !status.ok()) return status;
      if (!absl::SimpleAtoi(value, out) || *out < minimum) {
        return absl::InvalidArgumentError(
            absl::StrCat(name, " '", value, "': expected an integer of at least ", minimum));
      }
      return absl::OkStatus();
    };
    absl::Status status;
    if (name == "--input") {
      status = take_value();
      flags->options.inputs.push_back(value);
    } else if (name == "--output-prefix") {
      status = take_value();
      flags->options.output_prefix = value;
    } else if (name == "--tokenizer") {
      status = take_value();
      flags->tokenizer = value;
    } else if (name == "--separator") {
      status = take_value();
      flags->options.separator = value;
    } else if (name == "--json-key") {
      status = take_value();
      flags->options.json_key = value;
    } else if (name == "--threads") {
      int64_t threads = 0;
      status = take_count(1, &threads);
      flags->options.threads = static_cast<int>(threads);
    } else if (name == "--vocab-size") {
      status = take_count(257, &flags->vocab_size);
    } else if (name == "--train-tokenizer" && !inline_value) {
      flags->train_tokenizer = true;
    } else if (name == "--force" && !inline_value) {
      flags->force = true;
    } else if (name == "--no-progress" && !inline_value) {
      flags->options.progress = false;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown argument '", args[i], "'"));
    }
    if (!status.ok()) return status;
  }
  if (flags->options.inputs.empty()) return absl::InvalidArgumentError("--input: expected at least one input file");
  if (flags->options.output_prefix.empty()) return absl::InvalidArgumentError("--output-prefix: missing");
  if (flags->tokenizer.empty()) return absl::InvalidArgumentError("--tokenizer: missing");
  if (flags->train_tokenizer && flags->vocab_size == 0) {
    return absl::InvalidArgumentError("--train-tokenizer: needs --vocab-size N");
  }
  if (!flags->train_tokenizer && flags->vocab_size != 0) {
    return absl::InvalidArgumentError("--vocab-size: only meaningful with --train-tokenizer");
  }
  return absl::OkStatus();
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Reads every input's documents and trains a tokenizer on them; saves it into flags.tokenizer.
absl::StatusOr<Tokenizer> train_tokenizer(const Flags& flags) {
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::string> texts;
  int64_t bytes = 0;
  for (const std::string& input : flags.options.inputs) {
    auto documents = read_documents(input, flags.options);
    if (!documents.ok()) return documents.status();
    for (std::string& text : *documents) {
      bytes += static_cast<int64_t>(text.size());
      texts.push_back(std::move(text));
    }
  }
  auto tokenizer = Tokenizer::train(texts, flags.vocab_size);
  if (!tokenizer.ok()) return tokenizer.status();
  if (absl::Status status = tokenizer->save(flags.tokenizer); !status.ok()) return status;
  std::printf("preprocess: trained a %lld-token tokenizer on %zu documents (%.2f MB) in %.1f s -> %s\n",
              static_cast<long long>(tokenizer->vocab_size()), texts.size(), bytes / 1e6, seconds_since(start),
              flags.tokenizer.c_str());
  std::fflush(stdout);
  return tokenizer;
}

absl::Status run(const Flags& flags) {
  // Every input must be there before anything is written (the tokenizer included).
  for (const std::string& input : flags.options.inputs) {
    std::error_code error;
    if (!std::filesystem::is_regular_file(input, error)) {
      return absl::NotFoundError(absl::StrCat(input, ": no such input file"));
    }
  }
  absl::StatusOr<Tokenizer> tokenizer;
  if (flags.train_tokenizer) {
    const std::filesystem::path directory(flags.tokenizer);
    std::error_code error;
    if (!flags.force && (std::filesystem::exists(directory / "encoder.json", error) ||
                         std::filesystem::exists(directory / "vocab.bpe", error))) {
      return absl::AlreadyExistsError(absl::StrCat(
          flags.tokenizer, ": already holds a tokenizer; pass --force to replace it, or drop --train-tokenizer to use it"));
    }
    tokenizer = train_tokenizer(flags);
  } else {
    tokenizer = Tokenizer::load(flags.tokenizer);
  }
  if (!tokenizer.ok()) return tokenizer.status();

  auto report = preprocess(*tokenizer, flags.options);
  if (!report.ok()) return report.status();
  const int code = indexed_dtype_code_for_vocab(tokenizer->vocab_size());
  std::printf(
      "preprocess: %lld documents, %lld tokens (%s), %.2f MB of text in %.2f s (%.2f MB/s, %.0f tokens/s) -> "
      "%s.bin, %s.idx\n",
      static_cast<long long>(report->documents), static_cast<long long>(report->tokens), code == 8 ? "u16" : "i32",
      report->bytes / 1e6, report->seconds, report->seconds > 0 ? report->bytes / 1e6 / report->seconds : 0.0,
      report->seconds > 0 ? report->tokens / report->seconds : 0.0, flags.options.output_prefix.c_str(),
      flags.options.output_prefix.c_str());
  return absl::OkStatus();
}

}  // namespace

int run_preprocess(const std::vector<std::string>& args) {
  for (const std::string& arg : args) {
    if (arg == "--help" || arg == "-h") {
      std::printf("%s", kUsage);
      return 0;
    }
  }
  Flags flags;
  if (absl::Status status = parse(args, &flags); !status.ok()) {
    std::fprintf(stderr, "switchyard preprocess: %s\n%s", std::string(status.message()).c_str(), kUsage);
    return 2;
  }
  if (absl::Status status = run(flags); !status.ok()) {
    std::fprintf(stderr, "switchyard preprocess: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}

}  // namespace sy
