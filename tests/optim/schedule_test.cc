// Learning-rate schedules against PyTorch's schedulers at every step (SequentialLR over LinearLR
// warmup, then CosineAnnealingLR, ConstantLR + LinearLR for WSD, or ConstantLR), and the formulas'
// end points.
#include <gtest/gtest.h>

#include <cmath>

#include "absl/strings/str_cat.h"
#include "optim/schedule.h"
#include "tests/support/torch_reference.h"

namespace sy::testing {

// tests/support/op_harness.cc (linked into every test binary) defines OpCaseTest; this binary
// has no op cases.
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(OpCaseTest);

namespace {

struct ScheduleCase {
  ScheduleType type;
  int64_t warmup_steps;
  int64_t total_steps;
  double decay_fraction;
  double min_lr_ratio;
};

TEST(ScheduleReference, EveryStepMatchesTorchSchedulers) {
  SY_REQUIRE_TORCH();
  const double lr = 3e-3;
  const std::vector<ScheduleCase> schedule_cases = {
      {ScheduleType::kCosine, 5, 40, 0.2, 0.1},  {ScheduleType::kCosine, 0, 25, 0.2, 0.0},
      {ScheduleType::kCosine, 2, 300, 0.2, 0.05}, {ScheduleType::kWsd, 4, 50, 0.2, 0.1},
      {ScheduleType::kWsd, 0, 30, 0.3, 0.0},       {ScheduleType::kWsd, 10, 100, 0.45, 0.2},
      {ScheduleType::kConstant, 10, 30, 0.2, 0.1}, {ScheduleType::kConstant, 0, 10, 0.2, 0.1},
  };
  std::vector<TorchCase> torch_cases;
  for (const ScheduleCase& c : schedule_cases) {
    TorchCase torch_case;
    torch_case.inputs["kind"] = Tensor::scalar(2, DType::kF64);
    torch_case.inputs["type"] = Tensor::scalar(static_cast<double>(c.type), DType::kF64);
    torch_case.inputs["lr"] = Tensor::scalar(lr, DType::kF64);
    torch_case.inputs["min_lr_ratio"] = Tensor::scalar(c.min_lr_ratio, DType::kF64);
    torch_case.inputs["warmup"] = Tensor::scalar(static_cast<double>(c.warmup_steps), DType::kF64);
    torch_case.inputs["total"] = Tensor::scalar(static_cast<double>(c.total_steps), DType::kF64);
    torch_case.inputs["decay_fraction"] = Tensor::scalar(c.decay_fraction, DType::kF64);
    torch_case.outputs = {"lrs"};
    torch_cases.push_back(torch_case);
  }
  absl::StatusOr<std::vector<TorchOutputs>> torch = run_torch_reference("optim.py", torch_cases);
  ASSERT_TRUE(torch.ok()) << torch.status();
  for (size_t i = 0; i < schedule_cases.size(); ++i) {
    const ScheduleCase& c = schedule_cases[i];
    SCOPED_TRACE(absl::StrCat("case ", i, ": type ", static_cast<int>(c.type), ", warmup ", c.warmup_steps,
                              ", total ", c.total_steps));
    const std::vector<double> expected = (*torch)[i].at("lrs").to_vector<double>();
    ASSERT_EQ(expected.size(), static_cast<size_t>(c.total_steps));
    const ScheduleConfig config{.type = c.type, .warmup_steps = c.warmup_steps, .decay_fraction = c.decay_fraction};
    for (int64_t step = 0; step < c.total_steps; ++step) {
      const double ours = learning_rate(config, lr, c.min_lr_ratio, step, c.total_steps);
      EXPECT_LE(std::abs(ours - expected[step]), 1e-9 * std::abs(expected[step]))
          << "step " << step << ": ours " << ours << ", torch " << expected[step];
    }
  }
}

TEST(Schedule, WarmupRisesLinearlyToThePeak) {
  const ScheduleConfig config{.type = ScheduleType::kCosine, .warmup_steps = 4};
  EXPECT_DOUBLE_EQ(learning_rate(config, 1.0, 0.1, 0, 100), 0.25);
  EXPECT_DOUBLE_EQ(learning_rate(config, 1.0, 0.1, 2, 100), 0.75);
  EXPECT_DOUBLE_EQ(learning_rate(config, 1.0, 0.1, 3, 100), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate(config, 1.0, 0.1, 4, 100), 1.0);  // the first cosine step
}

TEST(Schedule, CosineReachesTheFloorAtTheLastStepAndStaysThere) {
  const ScheduleConfig config{.type = ScheduleType::kCosine, .warmup_steps = 10};
  // 101 steps: the cosine runs from step 10 (at lr) to step 100 (at the floor).
  EXPECT_DOUBLE_EQ(learning_rate(config, 2.0, 0.1, 10, 101), 2.0);
  EXPECT_DOUBLE_EQ(learning_rate(config, 2.0, 0.1, 55, 101), 1.1);  // halfway: the mean of lr and floor
  EXPECT_GT(learning_rate(config, 2.0, 0.1, 99, 101), 0.2);
  EXPECT_DOUBLE_EQ(learning_rate(config, 2.0, 0.1, 100, 101), 0.2);
  EXPECT_DOUBLE_EQ(learning_rate(config, 2.0, 0.1, 150, 101), 0.2);
}

TEST(Schedule, WsdIsStableThenDecaysLinearlyOverTheLastFraction) {
  const ScheduleConfig config{.type = ScheduleType::kWsd, .warmup_steps = 5, .decay_fraction = 0.25};
  // 100 steps: stable through step 74, decay over steps 75..99.
  EXPECT_DOUBLE_EQ(learning_rate(config, 1.0, 0.2, 5, 100), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate(config, 1.0, 0.2, 74, 100), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate(config, 1.0, 0.2, 75, 100), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate(config, 1.0, 0.2, 87, 100), 0.6);
  EXPECT_DOUBLE_EQ(learning_rate(config, 1.0, 0.2, 99, 100), 0.2);
  EXPECT_DOUBLE_EQ(learning_rate(config, 1.0, 0.2, 120, 100), 0.2);
}

TEST(Schedule, WsdDecayNeverStartsInsideWarmup) {
  const ScheduleConfig config{.type = ScheduleType::kWsd, .warmup_steps = 8, .decay_fraction = 0.9};
  EXPECT_DOUBLE_EQ(learning_rate(config, 1.0, 0.0, 7, 10), 1.0);  // the warmup's last step
  EXPECT_DOUBLE_EQ(learning_rate(config, 1.0, 0.0, 8, 10), 1.0);  // decay from the peak...
  EXPECT_DOUBLE_EQ(learning_rate(config, 1.0, 0.0, 9, 10), 0.0);  // ...to the floor
}

TEST(Schedule, ADecayPhaseOfOneStepRunsAtTheFloor) {
  const ScheduleConfig cosine{.type = ScheduleType::kCosine, .warmup_steps = 9};
  EXPECT_DOUBLE_EQ(learning_rate(cosine, 1.0, 0.1, 9, 10), 0.1);
  const ScheduleConfig wsd{.type = ScheduleType::kWsd, .warmup_steps = 0, .decay_fraction = 0.1};
  EXPECT_DOUBLE_EQ(learning_rate(wsd, 1.0, 0.1, 8, 10), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate(wsd, 1.0, 0.1, 9, 10), 0.1);
}

TEST(Schedule, ConstantHoldsThePeakAfterWarmup) {
  const ScheduleConfig config{.type = ScheduleType::kConstant, .warmup_steps = 2};
  EXPECT_DOUBLE_EQ(learning_rate(config, 0.5, 0.1, 0, 10), 0.25);
  EXPECT_DOUBLE_EQ(learning_rate(config, 0.5, 0.1, 2, 10), 0.5);
  EXPECT_DOUBLE_EQ(learning_rate(config, 0.5, 0.1, 9, 10), 0.5);
  EXPECT_DOUBLE_EQ(learning_rate(config, 0.5, 0.1, 50, 10), 0.5);
}

}  // namespace
}  // namespace sy::testing
