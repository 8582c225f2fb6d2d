// GPT-style samples over an indexed dataset (Megatron's GPTDataset): the documents of one
// split, shuffled per epoch with a seed, concatenated, and cut into samples of
// seq_length + 1 tokens that cross document boundaries (consecutive samples share one
// token). The three index arrays (document order, sample starts, sample shuffle) are cached
// as .npy files next to the data, keyed by a hash of their inputs, and rebuilt when those change.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "data/config.h"
#include "data/indexed_dataset.h"

namespace sy {

enum class Split { kTrain = 0, kValid = 1, kTest = 2 };
const char* split_name(Split split);

// Anything that hands out samples of seq_length + 1 tokens by number.
class SampleSource {
 public:
  virtual ~SampleSource() = default;
  virtual int64_t size() const = 0;  // number of samples
  virtual int64_t seq_length() const = 0;
  // Writes sample `index` (0 <= index < size()) as seq_length + 1 tokens.
  virtual void sample(int64_t index, std::span<int64_t> out) const = 0;
};

// Document ranges of each split from "969,30,1"-style weights (Megatron's rounding).
absl::StatusOr<std::array<std::pair<int64_t, int64_t>, 3>> split_documents(const std::string& split,
                                                                            int64_t num_documents);

struct GptDatasetOptions {
  Split split = Split::kTrain;
  int64_t num_samples = 0;   // at least this many (enough epochs are built)
  int64_t seq_length = 128;
  uint64_t seed = 1234;
  std::string split_weights = "969,30,1";
  std::string cache_dir;     // "" = next to the dataset
};

absl::StatusOr<std::shared_ptr<SampleSource>> build_gpt_dataset(std::shared_ptr<IndexedDataset> dataset,
                                                                const GptDatasetOptions& options);

}  // namespace sy
