// DataConfig's checks: what can be said about the data settings without opening any file
// (the files themselves are checked when the datasets open).
#include "data/config.h"

#include <cmath>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace sy {

absl::Status DataConfig::validate() const {
  if (tokenizer.empty()) {
    return absl::InvalidArgumentError("data.tokenizer is not set (a directory holding encoder.json and vocab.bpe)");
  }
  if (sources.empty()) {
    return absl::InvalidArgumentError("data.sources is empty (at least one {prefix, weight} is needed)");
  }
  for (size_t i = 0; i < sources.size(); ++i) {
    if (sources[i].prefix.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("data.sources[", i, "].prefix is empty"));
    }
    if (!(std::isfinite(sources[i].weight) && sources[i].weight > 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("data.sources[", i, "].weight must be a positive number, got ", sources[i].weight));
    }
  }
  // Megatron's form, as data/gpt_dataset.cc reads it: up to three weights split by ',' or '/',
  // missing ones 0. A split without training documents is refused here.
  const char separator = split.find('/') != std::string::npos ? '/' : ',';
  std::vector<std::string> parts = absl::StrSplit(split, separator);
  bool well_formed = parts.size() <= 3;
  for (size_t i = 0; well_formed && i < parts.size(); ++i) {
    double share = 0;
    well_formed = absl::SimpleAtod(absl::StripAsciiWhitespace(parts[i]), &share) && std::isfinite(share) && share >= 0;
    if (i == 0 && share <= 0) well_formed = false;
  }
  if (!well_formed) {
    return absl::InvalidArgumentError(absl::StrCat(
        "data.split must be up to three non-negative weights train,valid,test with train > 0 (e.g. \"969,30,1\"), "
        "got \"", split, "\""));
  }
  if (seq_length < 1) return absl::InvalidArgumentError(absl::StrCat("data.seq_length must be positive, got ", seq_length));
  return absl::OkStatus();
}

}  // namespace sy
