// Learning-rate schedules; the formulas are written out in optim/README.md.
#include "optim/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/check.h"

namespace sy {

namespace {

// How far `step` is through a decay phase from `start` to the last step (total_steps - 1):
// 0 at its first step, 1 at its last and after. A phase of one step sits at its end.
double decay_progress(int64_t step, int64_t start, int64_t total_steps) {
  const int64_t last = total_steps - 1;
  if (step >= last) return 1.0;
  return std::clamp(static_cast<double>(step - start) / static_cast<double>(last - start), 0.0, 1.0);
}

}  // namespace

double learning_rate(const ScheduleConfig& schedule, double lr, double min_lr_ratio, int64_t step,
                     int64_t total_steps) {
  SY_CHECK(step >= 0, "learning_rate: step ", step, " is negative");
  if (step < schedule.warmup_steps) {
    return lr * static_cast<double>(step + 1) / static_cast<double>(schedule.warmup_steps);
  }
  const double floor = min_lr_ratio * lr;
  switch (schedule.type) {
    case ScheduleType::kConstant:
      return lr;
    case ScheduleType::kCosine: {
      const double progress = decay_progress(step, schedule.warmup_steps, total_steps);
      return floor + (lr - floor) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
    }
    case ScheduleType::kWsd: {
      const int64_t decay_steps = std::llround(schedule.decay_fraction * static_cast<double>(total_steps));
      const int64_t decay_start = std::max(schedule.warmup_steps, total_steps - decay_steps);
      if (step < decay_start) return lr;
      return lr + (floor - lr) * decay_progress(step, decay_start, total_steps);
    }
  }
  SY_FAIL("unknown schedule type");
}

}  // namespace sy
