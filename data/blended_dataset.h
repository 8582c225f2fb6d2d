// Blended datasets: sample i of the blend comes from the source whose next pick is due
// soonest among those not already ahead of their weight (Tijdeman's chairman assignment), so
// after any n samples each source's count is within one of n * weight. Deterministic: no
// randomness involved.
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "data/gpt_dataset.h"

namespace sy {

absl::StatusOr<std::shared_ptr<SampleSource>> make_blended_dataset(
    std::vector<std::shared_ptr<SampleSource>> sources, std::vector<double> weights, int64_t num_samples);

}  // namespace sy
