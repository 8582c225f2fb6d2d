// Micro-batches by global sample number: the batch that starts at sample s is the same
// whatever came before, so resuming, and any data-parallel layout, sees exactly the same
// samples. Every per-rank assumption of the data path lives here.
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "core/tensor.h"
#include "data/config.h"
#include "data/gpt_dataset.h"

namespace sy {

struct Batch {
  Tensor tokens;   // (B, T) i64
  Tensor targets;  // (B, T) i64: tokens shifted by one
};

// The split of the blend of config.sources, with at least num_samples samples. Errors name
// the missing or damaged file.
absl::StatusOr<std::shared_ptr<SampleSource>> build_dataset(const DataConfig& config, Split split,
                                                            int64_t num_samples);

class Loader {
 public:
  Loader(std::shared_ptr<SampleSource> source, int64_t micro_batch_size);
  // Samples [first_sample, first_sample + micro_batch_size), wrapping past the end.
  Batch batch(int64_t first_sample) const;
  int64_t micro_batch_size() const { return micro_batch_size_; }
  const SampleSource& source() const { return *source_; }

 private:
  std::shared_ptr<SampleSource> source_;
  int64_t micro_batch_size_;
};

}  // namespace sy
