// The checks of the optimizer and schedule settings, each message naming its key.
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "optim/optimizer.h"
#include "optim/schedule.h"

namespace sy {
namespace {

// value in [low, high) or [low, high] as `closed` says; NaN fails every range.
absl::Status in_range(const char* key, double value, double low, double high, bool closed) {
  const bool ok = value >= low && (closed ? value <= high : value < high);
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(key, " must be in [", low, ", ", high, closed ? "]" : ")", ", got ", value));
}

}  // namespace

absl::Status OptimizerConfig::validate() const {
  if (!(std::isfinite(lr) && lr > 0)) {
    return absl::InvalidArgumentError(absl::StrCat("optimizer.lr must be a positive number, got ", lr));
  }
  if (!(std::isfinite(eps) && eps > 0)) {
    return absl::InvalidArgumentError(absl::StrCat("optimizer.eps must be a positive number, got ", eps));
  }
  for (auto [key, value] : {std::pair{"optimizer.weight_decay", weight_decay}, {"optimizer.grad_clip", grad_clip}}) {
    if (!(std::isfinite(value) && value >= 0)) {
      return absl::InvalidArgumentError(absl::StrCat(key, " must be >= 0, got ", value));
    }
  }
  if (absl::Status status = in_range("optimizer.min_lr_ratio", min_lr_ratio, 0, 1, true); !status.ok()) return status;
  for (auto [key, value] : {std::pair{"optimizer.beta1", beta1}, {"optimizer.beta2", beta2}, {"optimizer.momentum", momentum}}) {
    if (absl::Status status = in_range(key, value, 0, 1, false); !status.ok()) return status;
  }
  return absl::OkStatus();
}

absl::Status ScheduleConfig::validate(int64_t total_steps) const {
  if (warmup_steps < 0 || warmup_steps > total_steps) {
    return absl::InvalidArgumentError(absl::StrCat("schedule.warmup_steps (", warmup_steps,
                                                   ") must be in [0, training.steps = ", total_steps, "]"));
  }
  if (absl::Status status = in_range("schedule.decay_fraction", decay_fraction, 0, 1, true); !status.ok()) return status;
  if (type == ScheduleType::kWsd) {
    const double decay_steps = decay_fraction * static_cast<double>(total_steps);
    if (static_cast<double>(warmup_steps) + decay_steps > static_cast<double>(total_steps)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "schedule.warmup_steps (", warmup_steps, ") + schedule.decay_fraction (", decay_fraction,
          ") x training.steps (", total_steps, ") exceed training.steps: warmup and decay overlap"));
    }
  }
  return absl::OkStatus();
}

}  // namespace sy
