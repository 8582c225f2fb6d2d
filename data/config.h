// What a run trains on: the tokenizer, the indexed datasets blended by weight, the split and
// the sample length. One typed struct; launch/config.cc reads it from YAML.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace sy {

struct DataSource {
  std::string prefix;   // an indexed dataset: prefix.bin + prefix.idx
  double weight = 1.0;  // share of the blend (normalized over the sources)
  bool operator==(const DataSource&) const = default;
};

struct DataConfig {
  std::string tokenizer;             // directory holding encoder.json + vocab.bpe
  std::vector<DataSource> sources;   // at least one
  std::string split = "969,30,1";    // train,valid,test shares of the documents
  int64_t seq_length = 128;          // T: tokens per sample (a sample holds T + 1)
  uint64_t seed = 1234;              // document shuffling
  std::string cache_dir;             // sample index cache; "" = next to each dataset
  absl::Status validate() const;     // names the key
  bool operator==(const DataConfig&) const = default;
};

}  // namespace sy
