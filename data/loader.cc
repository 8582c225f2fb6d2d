// The data path a run sees: each source's GPT dataset for its share of the samples (as
// Megatron's blended builder sizes them), blended by weight, cut into micro-batches by global
// sample number.
#include "data/loader.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/check.h"
#include "data/blended_dataset.h"

namespace sy {

absl::StatusOr<std::shared_ptr<SampleSource>> build_dataset(const DataConfig& config, Split split,
                                                            int64_t num_samples) {
  if (config.sources.empty()) return absl::InvalidArgumentError("data.sources: expected at least one dataset");
  if (num_samples < 0) return absl::InvalidArgumentError(absl::StrCat("num_samples ", num_samples, " is negative"));
  double total_weight = 0;
  for (const DataSource& source : config.sources) {
    if (!std::isfinite(source.weight) || source.weight < 0) {
      return absl::InvalidArgumentError(absl::StrCat("data.sources: weight ", source.weight, " of ", source.prefix,
                                                     " is not a finite number >= 0"));
    }
    total_weight += source.weight;
  }
  if (total_weight <= 0) return absl::InvalidArgumentError("data.sources: the weights sum to 0");

  GptDatasetOptions options;
  options.split = split;
  options.seq_length = config.seq_length;
  options.seed = config.seed;
  options.split_weights = config.split;
  options.cache_dir = config.cache_dir;
  if (config.sources.size() == 1) {
    auto dataset = IndexedDataset::open(config.sources[0].prefix);
    if (!dataset.ok()) return dataset.status();
    options.num_samples = num_samples;
    return build_gpt_dataset(*std::move(dataset), options);
  }

  // Each source gets its share plus half a percent (Megatron's margin); num_samples = 0 means
  // one epoch of each, blended for as long as no source runs out.
  std::vector<std::shared_ptr<SampleSource>> sources;
  std::vector<double> weights;
  int64_t blend_size = num_samples;
  bool first = true;
  for (const DataSource& source : config.sources) {
    const double weight = source.weight / total_weight;
    auto dataset = IndexedDataset::open(source.prefix);
    if (!dataset.ok()) return dataset.status();
    options.num_samples =
        num_samples == 0 ? 0 : static_cast<int64_t>(std::ceil(static_cast<double>(num_samples) * weight * 1.005));
    auto samples = build_gpt_dataset(*std::move(dataset), options);
    if (!samples.ok()) return samples.status();
    if (num_samples == 0 && weight > 0) {
      // After n <= m / w blend samples a source of weight w has given at most n * w + sigma < m + 1
      // of its m samples (blended_dataset.cc).
      const int64_t lasts = static_cast<int64_t>(std::floor(static_cast<double>((*samples)->size()) / weight));
      blend_size = first ? lasts : std::min(blend_size, lasts);
      first = false;
    }
    sources.push_back(*std::move(samples));
    weights.push_back(weight);
  }
  return make_blended_dataset(std::move(sources), std::move(weights), blend_size);
}

Loader::Loader(std::shared_ptr<SampleSource> source, int64_t micro_batch_size)
    : source_(std::move(source)), micro_batch_size_(micro_batch_size) {
  SY_CHECK(source_ != nullptr, "Loader without a source");
  SY_CHECK(micro_batch_size_ >= 1, "micro_batch_size ", micro_batch_size_);
}

Batch Loader::batch(int64_t first_sample) const {
  const int64_t size = source_->size();
  SY_CHECK(size > 0, "Loader::batch on a dataset without samples");
  SY_CHECK(first_sample >= 0, "first_sample ", first_sample);
  const int64_t T = source_->seq_length();
  Batch batch{Tensor::empty({micro_batch_size_, T}, DType::kI64), Tensor::empty({micro_batch_size_, T}, DType::kI64)};
  int64_t* tokens = batch.tokens.data<int64_t>();
  int64_t* targets = batch.targets.data<int64_t>();
  std::vector<int64_t> sample(T + 1);
  for (int64_t b = 0; b < micro_batch_size_; ++b) {
    source_->sample((first_sample + b) % size, sample);
    std::copy(sample.begin(), sample.end() - 1, tokens + b * T);
    std::copy(sample.begin() + 1, sample.end(), targets + b * T);
  }
  return batch;
}

}  // namespace sy
