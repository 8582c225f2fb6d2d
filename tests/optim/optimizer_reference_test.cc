// AdamW and SGD against torch.optim on the same f32 parameters (two of rank 2, two of rank 1) and
// the same 20 pre-generated gradients and learning rates: parameters and state after 20 steps
// agree within 1e-6 normwise relative error (max |ours - torch| / max |torch| per tensor), both
// sides in f32.
#include <gtest/gtest.h>

#include <cmath>

#include "absl/strings/str_cat.h"
#include "optim/optimizer.h"
#include "tests/optim/optim_support.h"
#include "tests/support/torch_reference.h"

namespace sy::testing {
namespace {

constexpr int64_t kSteps = 20;

struct Problem {
  NamedParameters initial;     // f32
  std::vector<Tensor> grads;   // per parameter, (kSteps, ...its shape), f32
  std::vector<double> lrs;     // per step
};

Problem make_problem() {
  Problem problem;
  const std::vector<std::pair<std::string, Shape>> shapes = {
      {"layers.0.attention.wq.weight", {4, 6}},
      {"layers.0.attention_norm.weight", {6}},
      {"layers.0.mlp.experts.w1", {2, 3, 5}},
      {"output.bias", {5}}};
  for (size_t i = 0; i < shapes.size(); ++i) {
    const auto& [name, shape] = shapes[i];
    problem.initial.emplace_back(name, random_normal(shape, 7 + 2 * i).set_requires_grad(true));
    Shape stacked = shape;
    stacked.insert(stacked.begin(), kSteps);
    // Gradients of scales 1 down to 1e-3, so eps and the moments' scale both matter somewhere.
    const double scale = std::pow(10.0, -static_cast<double>(i));
    problem.grads.push_back(random_normal(stacked, 8 + 2 * i, scale));
  }
  for (int64_t step = 0; step < kSteps; ++step) problem.lrs.push_back(0.02 * (1.0 + 0.5 * std::sin(step)));
  return problem;
}

// Runs `config` over the problem and returns the final parameters and state dict.
std::pair<NamedParameters, StateDict> run_ours(const Problem& problem, const OptimizerConfig& config) {
  NamedParameters parameters = clone_parameters(problem.initial);
  std::unique_ptr<Optimizer> optimizer = make_optimizer(config, parameters);
  for (int64_t step = 0; step < kSteps; ++step) {
    for (size_t i = 0; i < parameters.size(); ++i) {
      parameters[i].second.set_grad(problem.grads[i].select(0, step).clone());
    }
    optimizer->step(problem.lrs[static_cast<size_t>(step)]);
  }
  return {parameters, optimizer->state_dict()};
}

TorchCase make_case(const Problem& problem, int kind, const std::vector<std::string>& state_kinds) {
  TorchCase torch_case;
  torch_case.inputs["kind"] = Tensor::scalar(kind, DType::kF64);
  torch_case.inputs["count"] = Tensor::scalar(static_cast<double>(problem.initial.size()), DType::kF64);
  torch_case.inputs["lrs"] = Tensor::from_vector(problem.lrs, {kSteps}, DType::kF64);
  for (size_t i = 0; i < problem.initial.size(); ++i) {
    torch_case.inputs[absl::StrCat("param.", i)] = problem.initial[i].second;
    torch_case.inputs[absl::StrCat("grads.", i)] = problem.grads[i];
    torch_case.outputs.push_back(absl::StrCat("param.", i));
    for (const std::string& kind_name : state_kinds) torch_case.outputs.push_back(absl::StrCat(kind_name, ".", i));
  }
  return torch_case;
}

void expect_matches_torch(const Problem& problem, const std::pair<NamedParameters, StateDict>& ours,
                          const TorchOutputs& torch, const std::vector<std::string>& state_kinds) {
  for (size_t i = 0; i < problem.initial.size(); ++i) {
    const auto& [name, parameter] = ours.first[i];
    SCOPED_TRACE(name);
    // The run moved the parameter by far more than the tolerance, so agreement means something.
    EXPECT_GT(normwise_relative_error(parameter, problem.initial[i].second), 1e-4);
    EXPECT_LE(normwise_relative_error(parameter, torch.at(absl::StrCat("param.", i))), 1e-6)
        << "ours  " << parameter << "\ntorch " << torch.at(absl::StrCat("param.", i));
    for (const std::string& kind : state_kinds) {
      EXPECT_LE(normwise_relative_error(ours.second.at(absl::StrCat(kind, ".", name)),
                                        torch.at(absl::StrCat(kind, ".", i))),
                1e-6)
          << kind;
    }
  }
}

TEST(OptimizerReference, AdamWMatchesTorchAdamWAfter20Steps) {
  SY_REQUIRE_TORCH();
  const Problem problem = make_problem();
  OptimizerConfig config{.type = OptimizerType::kAdamW, .weight_decay = 0.1, .beta1 = 0.9,
                         .beta2 = 0.95, .eps = 1e-8};
  const std::vector<std::string> kinds = {"exp_avg", "exp_avg_sq"};
  TorchCase torch_case = make_case(problem, 0, kinds);
  torch_case.inputs["weight_decay"] = Tensor::scalar(config.weight_decay, DType::kF64);
  torch_case.inputs["beta1"] = Tensor::scalar(config.beta1, DType::kF64);
  torch_case.inputs["beta2"] = Tensor::scalar(config.beta2, DType::kF64);
  torch_case.inputs["eps"] = Tensor::scalar(config.eps, DType::kF64);
  absl::StatusOr<std::vector<TorchOutputs>> torch = run_torch_reference("optim.py", {torch_case});
  ASSERT_TRUE(torch.ok()) << torch.status();
  expect_matches_torch(problem, run_ours(problem, config), (*torch)[0], kinds);
}

TEST(OptimizerReference, SgdMomentumMatchesTorchSgdAfter20Steps) {
  SY_REQUIRE_TORCH();
  const Problem problem = make_problem();
  OptimizerConfig config{.type = OptimizerType::kSgd, .weight_decay = 0.1, .momentum = 0.9};
  const std::vector<std::string> kinds = {"momentum"};
  TorchCase torch_case = make_case(problem, 1, kinds);
  torch_case.inputs["weight_decay"] = Tensor::scalar(config.weight_decay, DType::kF64);
  torch_case.inputs["momentum"] = Tensor::scalar(config.momentum, DType::kF64);
  absl::StatusOr<std::vector<TorchOutputs>> torch = run_torch_reference("optim.py", {torch_case});
  ASSERT_TRUE(torch.ok()) << torch.status();
  expect_matches_torch(problem, run_ours(problem, config), (*torch)[0], kinds);
}

}  // namespace
}  // namespace sy::testing
