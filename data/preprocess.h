// `switchyard preprocess`: plain-text files (documents split by a separator line) or JSON
// lines (a text field) -> tokens -> an indexed dataset, each document followed by the
// end-of-document token. Tokenizes on every core; writes under temporary names and renames.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "data/tokenizer.h"

namespace sy {

struct PreprocessOptions {
  std::vector<std::string> inputs;   // *.jsonl / *.json: JSON lines; anything else: plain text
  std::string output_prefix;         // writes output_prefix.bin / .idx
  std::string separator = "";        // plain text: a line equal to this ends a document ("" = blank line)
  std::string json_key = "text";
  int threads = 0;                   // 0 = every core
  bool progress = true;              // a progress bar on stderr when it is a terminal
};

struct PreprocessReport {
  int64_t documents = 0;
  int64_t tokens = 0;
  int64_t bytes = 0;
  double seconds = 0;
};

absl::StatusOr<PreprocessReport> preprocess(const Tokenizer& tokenizer, const PreprocessOptions& options);

// The documents of one input file as the preprocessor splits them (tokenizer training reads
// its corpus through this too).
absl::StatusOr<std::vector<std::string>> read_documents(const std::string& path, const PreprocessOptions& options);

}  // namespace sy
