// The optimizer base: parameters, lazily created f32 state, master copies for non-f32
// parameters, state_dict / load_state_dict, and the factory.
#include "optim/optimizer.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/autograd/grad_mode.h"
#include "optim/update_rules.h"

namespace sy {

namespace {

std::string state_key(const std::string& kind, const std::string& parameter_name) {
  return absl::StrCat(kind, ".", parameter_name);
}

bool needs_master(const Tensor& parameter) { return parameter.dtype() != DType::kF32; }

Tensor f32_copy(const Tensor& source, const Shape& shape, Device device) {
  NoGradGuard no_grad;
  Tensor copy = Tensor::empty(shape, DType::kF32, device);
  copy.copy_(source);
  return copy;
}

}  // namespace

Optimizer::Optimizer(std::vector<std::pair<std::string, Tensor>> parameters)
    : parameters_(std::move(parameters)) {
  std::set<std::string> names;
  for (const auto& [name, parameter] : parameters_) {
    SY_CHECK(parameter.defined(), "optimizer: parameter '", name, "' is undefined");
    SY_CHECK(is_floating(parameter.dtype()), "optimizer: parameter '", name, "' is ",
             dtype_name(parameter.dtype()), ", expected a floating-point tensor");
    SY_CHECK(names.insert(name).second, "optimizer: parameter name '", name, "' appears twice");
  }
}

void Optimizer::zero_grad() {
  for (auto& [name, parameter] : parameters_) parameter.set_grad(Tensor());
}

StateDict Optimizer::state_dict() const {
  StateDict out;
  for (const auto& [name, parameter] : parameters_) {
    std::vector<std::string> kinds = state_kinds();
    if (needs_master(parameter)) kinds.push_back("master");
    for (const std::string& kind : kinds) {
      const std::string key = state_key(kind, name);
      auto found = state_.find(key);
      if (found != state_.end()) {
        out.emplace(key, found->second);
      } else if (kind == "master") {
        // What the first step would start from.
        out.emplace(key, f32_copy(parameter.detach(), parameter.shape(), parameter.device()));
      } else {
        out.emplace(key, Tensor::zeros(parameter.shape(), DType::kF32, parameter.device()));
      }
    }
  }
  out.emplace("step", Tensor::scalar(static_cast<double>(step_count_), DType::kI64));
  return out;
}

absl::Status Optimizer::load_state_dict(const StateDict& state) {
  // Check everything first, so that a bad checkpoint leaves the optimizer as it was.
  std::vector<std::string> problems;
  std::set<std::string> expected{"step"};
  struct Entry {
    std::string key;
    const Tensor* parameter;
  };
  std::vector<Entry> entries;
  for (const auto& [name, parameter] : parameters_) {
    std::vector<std::string> kinds = state_kinds();
    if (needs_master(parameter)) kinds.push_back("master");
    for (const std::string& kind : kinds) {
      const std::string key = state_key(kind, name);
      expected.insert(key);
      entries.push_back({key, &parameter});
      auto found = state.find(key);
      if (found == state.end()) {
        problems.push_back(absl::StrCat("missing key '", key, "' (shape ",
                                        ShapeString(parameter.shape()), ")"));
      } else if (!found->second.defined()) {
        problems.push_back(absl::StrCat("key '", key, "' holds an undefined tensor"));
      } else if (found->second.shape() != parameter.shape()) {
        problems.push_back(absl::StrCat("shape mismatch for '", key, "': the state dict has ",
                                        ShapeString(found->second.shape()),
                                        ", the optimizer expects ", ShapeString(parameter.shape())));
      } else if (!is_floating(found->second.dtype())) {
        problems.push_back(absl::StrCat("dtype mismatch for '", key, "': the state dict has ",
                                        dtype_name(found->second.dtype()),
                                        ", the optimizer expects a floating-point tensor"));
      }
    }
  }
  int64_t step = 0;
  auto found_step = state.find("step");
  if (found_step == state.end()) {
    problems.push_back("missing key 'step' (shape ())");
  } else if (!found_step->second.defined() || found_step->second.numel() != 1) {
    problems.push_back(absl::StrCat(
        "key 'step' must hold one value (shape ()), got shape ",
        found_step->second.defined() ? ShapeString(found_step->second.shape()) : "undefined"));
  } else {
    const double value = found_step->second.item();
    step = static_cast<int64_t>(value);
    if (value < 0 || static_cast<double>(step) != value) {
      problems.push_back(absl::StrCat("key 'step' must be a non-negative integer, got ", value));
    }
  }
  for (const auto& [key, tensor] : state) {
    if (!expected.count(key)) problems.push_back(absl::StrCat("unexpected key '", key, "'"));
  }
  if (!problems.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("optimizer load_state_dict: ", absl::StrJoin(problems, "; ")));
  }
  // Copies, so the optimizer never aliases the caller's tensors.
  StateDict loaded;
  for (const Entry& entry : entries) {
    loaded.emplace(entry.key,
                   f32_copy(state.at(entry.key), entry.parameter->shape(), entry.parameter->device()));
  }
  state_ = std::move(loaded);
  step_count_ = step;
  return absl::OkStatus();
}

std::unique_ptr<Optimizer> make_optimizer(const OptimizerConfig& config,
                                          std::vector<std::pair<std::string, Tensor>> parameters) {
  switch (config.type) {
    case OptimizerType::kAdamW: return optim_internal::make_adamw(config, std::move(parameters));
    case OptimizerType::kSgd: return optim_internal::make_sgd(config, std::move(parameters));
  }
  SY_FAIL("unknown optimizer type");
}

namespace optim_internal {

UpdateTarget begin_update(StateDict& state, const std::string& name, const Tensor& parameter,
                          const std::vector<std::string>& kinds) {
  NoGradGuard no_grad;
  UpdateTarget target;
  const Tensor grad = parameter.grad();
  SY_CHECK(grad.shape() == parameter.shape(), "optimizer: the gradient of '", name, "' has shape ",
           ShapeString(grad.shape()), ", the parameter ", ShapeString(parameter.shape()));
  const Device device = parameter.device();
  target.grad = grad.dtype() == DType::kF32 && grad.device() == device
                    ? grad.detach()
                    : f32_copy(grad.detach(), grad.shape(), device);
  target.has_master = needs_master(parameter);
  if (target.has_master) {
    const std::string key = state_key("master", name);
    auto found = state.find(key);
    if (found == state.end()) {
      found = state.emplace(key, f32_copy(parameter.detach(), parameter.shape(), device)).first;
    }
    target.weights = found->second;
  } else {
    target.weights = parameter.detach();  // updated in place, no copy
  }
  for (const std::string& kind : kinds) {
    const std::string key = state_key(kind, name);
    auto found = state.find(key);
    if (found == state.end()) {
      found = state.emplace(key, Tensor::zeros(parameter.shape(), DType::kF32, device)).first;
    }
    target.state.push_back(found->second);
  }
  target.on_cpu_contiguous = device.is_cpu() && target.weights.is_contiguous() &&
                             target.grad.is_contiguous();
  for (const Tensor& tensor : target.state) {
    target.on_cpu_contiguous = target.on_cpu_contiguous && tensor.is_contiguous();
  }
  return target;
}

void finish_update(const UpdateTarget& target, Tensor& parameter) {
  NoGradGuard no_grad;
  if (target.has_master) {
    parameter.copy_(target.weights);  // rounds to nearest (even) in the parameter's dtype
  } else {
    parameter.bump_version();
  }
}

}  // namespace optim_internal

}  // namespace sy
