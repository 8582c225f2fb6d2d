// The optimizers' contracts: no weight decay on rank-1 parameters, parameters without a gradient
// skipped, f32 master weights for bf16 parameters (and in-place updates for f32 ones), state
// names, a bit-exact state_dict round trip, load_state_dict errors that change nothing, and the
// op-based update path (what CUDA tensors take) agreeing bit for bit with the fused CPU loop.
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "core/ops/ops.h"
#include "optim/optimizer.h"
#include "optim/update_rules.h"
#include "tests/optim/optim_support.h"

namespace sy::testing {
namespace {

const OptimizerConfig kAdamW{.type = OptimizerType::kAdamW, .weight_decay = 0.1, .beta1 = 0.9,
                             .beta2 = 0.95, .eps = 1e-8};
const OptimizerConfig kSgd{.type = OptimizerType::kSgd, .weight_decay = 0.1, .momentum = 0.9};

// A matrix, a rank-3 tensor and a vector, in `dtype`.
NamedParameters small_model(DType dtype = DType::kF32, uint64_t seed = 1) {
  return {{"w", random_normal({3, 4}, seed, 1.0, dtype).set_requires_grad(true)},
          {"experts", random_normal({2, 2, 3}, seed + 1, 1.0, dtype).set_requires_grad(true)},
          {"norm", random_normal({4}, seed + 2, 1.0, dtype).set_requires_grad(true)}};
}

// Gives every parameter a seeded gradient for `step` (in the parameter's dtype).
void set_grads(NamedParameters& parameters, int64_t step) {
  for (size_t i = 0; i < parameters.size(); ++i) {
    Tensor& parameter = parameters[i].second;
    parameter.set_grad(random_normal(parameter.shape(), 1000 * static_cast<uint64_t>(step) + i, 0.1,
                                     parameter.dtype()));
  }
}

void run_steps(Optimizer& optimizer, NamedParameters& parameters, int64_t first, int64_t count) {
  for (int64_t step = first; step < first + count; ++step) {
    set_grads(parameters, step);
    optimizer.step(0.01 * (1 + step % 3));
  }
}

TEST(Optimizer, NoWeightDecayOnRank1Parameters) {
  for (const OptimizerConfig& config : {kAdamW, kSgd}) {
    SCOPED_TRACE(config.type == OptimizerType::kAdamW ? "AdamW" : "SGD");
    NamedParameters parameters = small_model();
    NamedParameters before = clone_parameters(parameters);
    std::unique_ptr<Optimizer> optimizer = make_optimizer(config, parameters);
    // Zero gradients: only weight decay moves a parameter.
    for (auto& [name, parameter] : parameters) parameter.set_grad(Tensor::zeros(parameter.shape()));
    optimizer->step(0.5);
    EXPECT_TRUE(same_values(parameters[2].second, before[2].second)) << "the rank-1 parameter moved";
    for (int i : {0, 1}) {
      // AdamW: w * (1 - lr * wd); SGD: w - lr * (wd * w). Both 0.95 w up to f32 rounding.
      const Tensor expected = before[i].second * 0.95;
      EXPECT_LE(normwise_relative_error(parameters[i].second, expected), 1e-6) << parameters[i].first;
      EXPECT_FALSE(same_values(parameters[i].second, before[i].second));
    }
  }
}

TEST(Optimizer, SkipsParametersWithoutGradientAndLeavesTheirState) {
  for (const OptimizerConfig& config : {kAdamW, kSgd}) {
    SCOPED_TRACE(config.type == OptimizerType::kAdamW ? "AdamW" : "SGD");
    NamedParameters parameters = small_model();
    NamedParameters before = clone_parameters(parameters);
    std::unique_ptr<Optimizer> optimizer = make_optimizer(config, parameters);
    for (int64_t step = 0; step < 3; ++step) {
      set_grads(parameters, step);
      parameters[1].second.set_grad(Tensor());
      optimizer->step(0.01);
    }
    EXPECT_EQ(optimizer->step_count(), 3);
    EXPECT_TRUE(same_values(parameters[1].second, before[1].second));
    EXPECT_FALSE(same_values(parameters[0].second, before[0].second));
    for (const auto& [key, tensor] : optimizer->state_dict()) {
      if (key.ends_with(".experts")) {
        EXPECT_TRUE(same_values(tensor, Tensor::zeros(tensor.shape()))) << key;
      }
    }
    // zero_grad drops every gradient.
    optimizer->zero_grad();
    for (const auto& [name, parameter] : parameters) EXPECT_FALSE(parameter.grad().defined()) << name;
  }
}

TEST(Optimizer, StateDictNamesEveryStatePerParameterAndTheStep) {
  NamedParameters parameters = {{"a.weight", Tensor::zeros({2, 3}).set_requires_grad(true)},
                                {"b.weight", Tensor::zeros({3}, DType::kBF16).set_requires_grad(true)}};
  auto keys = [](const StateDict& state) {
    std::vector<std::string> out;
    for (const auto& [key, tensor] : state) out.push_back(key);
    return out;
  };
  std::unique_ptr<Optimizer> adamw = make_optimizer(kAdamW, parameters);
  EXPECT_EQ(keys(adamw->state_dict()),
            (std::vector<std::string>{"exp_avg.a.weight", "exp_avg.b.weight", "exp_avg_sq.a.weight",
                                      "exp_avg_sq.b.weight", "master.b.weight", "step"}));
  std::unique_ptr<Optimizer> sgd = make_optimizer(kSgd, parameters);
  EXPECT_EQ(keys(sgd->state_dict()),
            (std::vector<std::string>{"master.b.weight", "momentum.a.weight", "momentum.b.weight", "step"}));
  const StateDict state = adamw->state_dict();
  EXPECT_EQ(state.at("step").dtype(), DType::kI64);
  EXPECT_EQ(state.at("step").dim(), 0);
  EXPECT_EQ(state.at("exp_avg.b.weight").dtype(), DType::kF32);
  EXPECT_EQ(state.at("master.b.weight").dtype(), DType::kF32);
}

TEST(Optimizer, Bf16ParametersKeepF32MasterWeightsThatFollowTheF32Run) {
  for (const OptimizerConfig& config : {kAdamW, kSgd}) {
    SCOPED_TRACE(config.type == OptimizerType::kAdamW ? "AdamW" : "SGD");
    // The same bf16-representable values and gradients, once as bf16 parameters, once as f32.
    NamedParameters low = small_model(DType::kBF16);
    NamedParameters full;
    for (const auto& [name, parameter] : low) {
      full.emplace_back(name, parameter.detach().to(DType::kF32).set_requires_grad(true));
    }
    std::unique_ptr<Optimizer> low_optimizer = make_optimizer(config, low);
    std::unique_ptr<Optimizer> full_optimizer = make_optimizer(config, full);
    const void* full_storage = full[0].second.data_ptr();
    for (int64_t step = 0; step < 10; ++step) {
      set_grads(low, step);
      for (size_t i = 0; i < low.size(); ++i) full[i].second.set_grad(low[i].second.grad().to(DType::kF32));
      low_optimizer->step(0.01);
      full_optimizer->step(0.01);
    }
    const StateDict low_state = low_optimizer->state_dict();
    bool master_finer_than_bf16 = false;
    for (size_t i = 0; i < low.size(); ++i) {
      const Tensor& master = low_state.at("master." + low[i].first);
      EXPECT_TRUE(same_values(master, full[i].second)) << low[i].first;
      EXPECT_EQ(low[i].second.dtype(), DType::kBF16);
      EXPECT_TRUE(same_values(low[i].second, master.to(DType::kBF16))) << low[i].first;
      master_finer_than_bf16 = master_finer_than_bf16 || !same_values(master, low[i].second);
    }
    EXPECT_TRUE(master_finer_than_bf16) << "the master weights hold nothing the bf16 weights lack";
    // f32 parameters are updated in place and have no master copy.
    EXPECT_EQ(full[0].second.data_ptr(), full_storage);
    EXPECT_FALSE(full_optimizer->state_dict().contains("master.w"));
  }
}

TEST(Optimizer, StateDictRoundTripContinuesBitForBit) {
  for (const OptimizerConfig& config : {kAdamW, kSgd}) {
    SCOPED_TRACE(config.type == OptimizerType::kAdamW ? "AdamW" : "SGD");
    NamedParameters straight = small_model();
    straight.emplace_back("low", random_normal({2, 5}, 9, 1.0, DType::kBF16).set_requires_grad(true));
    NamedParameters interrupted = clone_parameters(straight);
    std::unique_ptr<Optimizer> uninterrupted = make_optimizer(config, straight);
    run_steps(*uninterrupted, straight, 0, 20);

    std::unique_ptr<Optimizer> first = make_optimizer(config, interrupted);
    run_steps(*first, interrupted, 0, 10);
    // A fresh process: the weights and the optimizer state come back from a checkpoint.
    NamedParameters resumed = clone_parameters(interrupted);
    std::unique_ptr<Optimizer> second = make_optimizer(config, resumed);
    StateDict saved;
    for (const auto& [key, tensor] : first->state_dict()) saved.emplace(key, tensor.clone());
    ASSERT_TRUE(second->load_state_dict(saved).ok());
    EXPECT_EQ(second->step_count(), 10);
    run_steps(*second, resumed, 10, 10);

    for (size_t i = 0; i < straight.size(); ++i) {
      EXPECT_TRUE(same_values(resumed[i].second, straight[i].second)) << straight[i].first;
    }
    const StateDict expected = uninterrupted->state_dict();
    for (const auto& [key, tensor] : second->state_dict()) {
      EXPECT_TRUE(same_values(tensor, expected.at(key))) << key;
    }
  }
}

TEST(Optimizer, LoadStateDictErrorsNameTheKeyAndShapesAndChangeNothing) {
  NamedParameters parameters = small_model();
  std::unique_ptr<Optimizer> optimizer = make_optimizer(kAdamW, parameters);
  run_steps(*optimizer, parameters, 0, 2);
  StateDict good;
  for (const auto& [key, tensor] : optimizer->state_dict()) good.emplace(key, tensor.clone());

  std::unique_ptr<Optimizer> target = make_optimizer(kAdamW, clone_parameters(parameters));
  run_steps(*target, parameters, 5, 1);
  StateDict before;
  for (const auto& [key, tensor] : target->state_dict()) before.emplace(key, tensor.clone());

  struct BadCase {
    std::string what;
    StateDict state;
    std::vector<std::string> message_parts;
  };
  std::vector<BadCase> bad_cases;
  {
    StateDict state = good;
    state.erase("exp_avg_sq.norm");
    bad_cases.push_back({"missing key", state, {"missing key 'exp_avg_sq.norm'", "(4)"}});
  }
  {
    StateDict state = good;
    state.emplace("exp_avg.head", Tensor::zeros({2}));
    bad_cases.push_back({"unexpected key", state, {"unexpected key 'exp_avg.head'"}});
  }
  {
    StateDict state = good;
    state["exp_avg.w"] = Tensor::zeros({4, 3});
    bad_cases.push_back({"shape", state, {"'exp_avg.w'", "(4, 3)", "(3, 4)"}});
  }
  {
    StateDict state = good;
    state["exp_avg.w"] = Tensor::zeros({3, 4}, DType::kI64);
    bad_cases.push_back({"dtype", state, {"'exp_avg.w'", "i64"}});
  }
  {
    StateDict state = good;
    state.erase("step");
    bad_cases.push_back({"no step", state, {"missing key 'step'"}});
  }
  {
    StateDict state = good;
    state["step"] = Tensor::scalar(-3, DType::kI64);
    bad_cases.push_back({"negative step", state, {"'step'", "-3"}});
  }
  for (const BadCase& bad : bad_cases) {
    SCOPED_TRACE(bad.what);
    absl::Status status = target->load_state_dict(bad.state);
    ASSERT_FALSE(status.ok());
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    for (const std::string& part : bad.message_parts) {
      EXPECT_NE(status.message().find(part), std::string::npos) << "'" << part << "' not in: " << status.message();
    }
    EXPECT_EQ(target->step_count(), 1);
    for (const auto& [key, tensor] : target->state_dict()) EXPECT_TRUE(same_values(tensor, before.at(key))) << key;
  }
  EXPECT_TRUE(target->load_state_dict(good).ok());
  EXPECT_EQ(target->step_count(), 2);
}

TEST(Optimizer, NonContiguousParametersTakeTheOpPathAndMatchContiguousOnes) {
  for (const OptimizerConfig& config : {kAdamW, kSgd}) {
    SCOPED_TRACE(config.type == OptimizerType::kAdamW ? "AdamW" : "SGD");
    const Tensor values = random_normal({5, 3}, 11);
    NamedParameters contiguous = {{"w", values.clone().set_requires_grad(true)}};
    // The same values, stored transposed.
    NamedParameters strided = {{"w", values.t().contiguous().t().set_requires_grad(true)}};
    ASSERT_FALSE(strided[0].second.is_contiguous());
    std::unique_ptr<Optimizer> a = make_optimizer(config, contiguous);
    std::unique_ptr<Optimizer> b = make_optimizer(config, strided);
    for (int64_t step = 0; step < 5; ++step) {
      const Tensor grad = random_normal({5, 3}, 50 + step);
      contiguous[0].second.set_grad(grad);
      strided[0].second.set_grad(grad);
      a->step(0.05);
      b->step(0.05);
    }
    EXPECT_TRUE(same_values(strided[0].second, contiguous[0].second));
  }
}

TEST(OptimizerUpdateRules, OpPathMatchesTheCpuLoopBitForBit) {
  using namespace optim_internal;
  const Shape shape = {70000};  // above the loops' parallel threshold
  Tensor w_loop = random_normal(shape, 1), m_loop = Tensor::zeros(shape), v_loop = Tensor::zeros(shape);
  Tensor w_ops = w_loop.clone(), m_ops = m_loop.clone(), v_ops = v_loop.clone();
  for (int step = 1; step <= 3; ++step) {
    const Tensor grad = random_normal(shape, 10 + step, 0.01);
    const AdamWScalars scalars{.decay_factor = 0.999f, .beta1 = 0.9f, .one_minus_beta1 = 0.1f,
                               .beta2 = 0.95f, .one_minus_beta2 = 0.05f,
                               .bias_correction2_sqrt = 0.3f * step, .eps = 1e-8f,
                               .negative_step_size = -0.01f * step};
    adamw_update_cpu(scalars, w_loop, m_loop, v_loop, grad);
    adamw_update_ops(scalars, w_ops, m_ops, v_ops, grad);
    const SgdScalars sgd{.weight_decay = 0.1f, .momentum = 0.9f, .negative_lr = -0.02f};
    sgd_update_cpu(sgd, w_loop, m_loop, grad);
    sgd_update_ops(sgd, w_ops, m_ops, grad);
  }
  EXPECT_TRUE(same_values(w_ops, w_loop));
  EXPECT_TRUE(same_values(m_ops, m_loop));
  EXPECT_TRUE(same_values(v_ops, v_loop));
}

TEST(Optimizer, CudaBf16ParametersMatchTheCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: the op-based update path is checked on the CPU only";
  for (const OptimizerConfig& config : {kAdamW, kSgd}) {
    SCOPED_TRACE(config.type == OptimizerType::kAdamW ? "AdamW" : "SGD");
    NamedParameters cpu = small_model(DType::kBF16);
    NamedParameters gpu;
    for (const auto& [name, parameter] : cpu) {
      gpu.emplace_back(name, parameter.detach().to(Device::CUDA(0)).set_requires_grad(true));
    }
    std::unique_ptr<Optimizer> cpu_optimizer = make_optimizer(config, cpu);
    std::unique_ptr<Optimizer> gpu_optimizer = make_optimizer(config, gpu);
    for (int64_t step = 0; step < 5; ++step) {
      set_grads(cpu, step);
      for (size_t i = 0; i < cpu.size(); ++i) gpu[i].second.set_grad(cpu[i].second.grad().to(Device::CUDA(0)));
      cpu_optimizer->step(0.01);
      gpu_optimizer->step(0.01);
    }
    const StateDict cpu_state = cpu_optimizer->state_dict();
    for (const auto& [key, tensor] : gpu_optimizer->state_dict()) {
      EXPECT_TRUE(tensor.device() == (key == "step" ? Device::CPU() : Device::CUDA(0)))
          << key << " is on " << tensor.device().to_string();
      EXPECT_LE(normwise_relative_error(tensor.to(Device::CPU()), cpu_state.at(key)), 1e-6) << key;
    }
  }
}

}  // namespace
}  // namespace sy::testing
