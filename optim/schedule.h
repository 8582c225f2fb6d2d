// Learning-rate schedules: linear warmup, then cosine decay, WSD (warmup-stable-decay) or
// constant, never below min_lr_ratio * lr after warmup.
#pragma once

#include <cstdint>

#include "absl/status/status.h"

namespace sy {

enum class ScheduleType { kCosine, kWsd, kConstant };

struct ScheduleConfig {
  ScheduleType type = ScheduleType::kCosine;
  int64_t warmup_steps = 0;
  double decay_fraction = 0.2;  // WSD: the last fraction of the steps decays linearly to the floor
  absl::Status validate(int64_t total_steps) const;
  bool operator==(const ScheduleConfig&) const = default;
};

// The learning rate of optimizer step `step` (0-based: the step about to be taken) out of
// `total_steps`, for peak `lr` and floor `min_lr_ratio * lr`. Warmup: lr * (step + 1) / warmup_steps.
// After it (W = warmup_steps, last = total_steps - 1, p clamped to [0, 1]):
//   cosine:   floor + (lr - floor) * (1 + cos(pi * p)) / 2,  p = (step - W) / (last - W)
//   WSD:      lr until S = max(W, total_steps - round(decay_fraction * total_steps)), then
//             lr + (floor - lr) * p,  p = (step - S) / (last - S)
//   constant: lr
// so a decay starts at lr and reaches the floor exactly at the last step (optim/README.md).
double learning_rate(const ScheduleConfig& schedule, double lr, double min_lr_ratio, int64_t step,
                     int64_t total_steps);

}  // namespace sy
