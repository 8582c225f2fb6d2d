// Deterministic blending with every source's count within one sample of n * weight after any
// n samples. Megatron's greedy rule (pick the source lagging its weight * n the most) can fall
// more than one sample behind with four or more sources, so this uses Tijdeman's solution of
// the chairman assignment problem (1980): with S sources and sigma = 1 - 1/(2S - 2), sample t
// (1-based) goes, among the sources whose count c could grow without getting more than sigma
// ahead ((c + 1 - sigma) <= t * w), to the one whose deadline (c + sigma) / w comes first.
// Tijdeman proves |c - t * w| <= sigma < 1 for every source at every t.
#include "data/blended_dataset.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "core/check.h"

namespace sy {
namespace {

class BlendedDataset final : public SampleSource {
 public:
  BlendedDataset(std::vector<std::shared_ptr<SampleSource>> sources, std::vector<int32_t> source_of,
                 std::vector<int64_t> index_in_source)
      : sources_(std::move(sources)), source_of_(std::move(source_of)), index_in_source_(std::move(index_in_source)) {}

  int64_t size() const override { return static_cast<int64_t>(source_of_.size()); }
  int64_t seq_length() const override { return sources_.front()->seq_length(); }
  void sample(int64_t index, std::span<int64_t> out) const override {
    SY_CHECK(index >= 0 && index < size(), "sample ", index, " of ", size());
    sources_[source_of_[index]]->sample(index_in_source_[index], out);
  }

 private:
  std::vector<std::shared_ptr<SampleSource>> sources_;
  std::vector<int32_t> source_of_;        // (samples): which source
  std::vector<int64_t> index_in_source_;  // (samples): that source's sample number
};

}  // namespace

absl::StatusOr<std::shared_ptr<SampleSource>> make_blended_dataset(std::vector<std::shared_ptr<SampleSource>> sources,
                                                                   std::vector<double> weights, int64_t num_samples) {
  if (sources.empty()) return absl::InvalidArgumentError("a blend needs at least one source");
  if (weights.size() != sources.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("a blend of ", sources.size(), " sources got ", weights.size(), " weights"));
  }
  if (num_samples < 0) return absl::InvalidArgumentError(absl::StrCat("num_samples ", num_samples, " is negative"));
  double total = 0;
  for (size_t s = 0; s < weights.size(); ++s) {
    if (!std::isfinite(weights[s]) || weights[s] < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("blend weight ", weights[s], " of source ", s, ": expected a finite number >= 0"));
    }
    total += weights[s];
  }
  if (total <= 0) return absl::InvalidArgumentError("blend weights sum to 0");
  for (double& weight : weights) weight /= total;
  for (size_t s = 0; s < sources.size(); ++s) {
    SY_CHECK(sources[s] != nullptr, "blend source ", s, " is null");
    if (sources[s]->seq_length() != sources[0]->seq_length()) {
      return absl::InvalidArgumentError(absl::StrCat("blend source ", s, " has seq_length ", sources[s]->seq_length(),
                                                     ", source 0 has ", sources[0]->seq_length()));
    }
  }

  const size_t num_sources = sources.size();
  const double sigma = num_sources > 1 ? 1.0 - 1.0 / (2.0 * static_cast<double>(num_sources - 1)) : 0.0;
  std::vector<int32_t> source_of(num_samples);
  std::vector<int64_t> index_in_source(num_samples);
  std::vector<int64_t> counts(num_sources, 0);
  for (int64_t i = 0; i < num_samples; ++i) {
    const double t = static_cast<double>(i + 1);
    const double slack = 1e-9 * t;  // rounding of t * w, never enough to break the bound
    size_t best = num_sources;
    double best_deadline = std::numeric_limits<double>::infinity();
    for (size_t s = 0; s < num_sources; ++s) {
      const double count = static_cast<double>(counts[s]);
      if (weights[s] <= 0 || count + 1 - sigma > t * weights[s] + slack) continue;
      const double deadline = (count + sigma) / weights[s];
      if (best == num_sources || deadline < best_deadline) {
        best = s;
        best_deadline = deadline;
      }
    }
    SY_CHECK(best < num_sources, "blending found no eligible source for sample ", i);
    source_of[i] = static_cast<int32_t>(best);
    index_in_source[i] = counts[best]++;
  }
  for (size_t s = 0; s < sources.size(); ++s) {
    if (counts[s] > sources[s]->size()) {
      return absl::InvalidArgumentError(absl::StrCat("blend source ", s, " has ", sources[s]->size(),
                                                     " samples; its weight needs ", counts[s], " of ", num_samples));
    }
  }
  return std::make_shared<BlendedDataset>(std::move(sources), std::move(source_of), std::move(index_in_source));
}

}  // namespace sy
