// Module bookkeeping: registration, hierarchical names, modes, state dicts.
#include "core/nn/module.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/autograd/grad_mode.h"

namespace sy {

void Module::check_new_name(const std::string& name) const {
  SY_CHECK(!name.empty() && name.find('.') == std::string::npos,
           "module member name '", name, "' must be non-empty and contain no '.'");
  auto taken = [&](const auto& entries) {
    for (const auto& entry : entries) {
      if (entry.first == name) return true;
    }
    return false;
  };
  SY_CHECK(!taken(parameters_) && !taken(buffers_) && !taken(children_), "module member name '",
           name, "' registered twice");
}

Tensor Module::register_parameter(const std::string& name, Tensor tensor) {
  check_new_name(name);
  SY_CHECK(tensor.defined() && tensor.is_leaf(), "parameter '", name,
           "' must be a defined leaf tensor");
  tensor.set_requires_grad(true);
  parameters_.emplace_back(name, tensor);
  return tensor;
}

Tensor Module::register_buffer(const std::string& name, Tensor tensor, bool persistent) {
  check_new_name(name);
  SY_CHECK(tensor.defined() && !tensor.requires_grad(), "buffer '", name,
           "' must be a defined tensor that does not require grad");
  buffers_.emplace_back(name, Buffer{tensor, persistent});
  return tensor;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> module) {
  check_new_name(name);
  SY_CHECK(module != nullptr, "child module '", name, "' is null");
  module->train(training_);
  children_.emplace_back(name, std::move(module));
}

void Module::collect(const std::string& prefix, bool parameters, bool buffers,
                     bool persistent_only, std::vector<std::pair<std::string, Tensor>>* out) const {
  if (parameters) {
    for (const auto& [name, tensor] : parameters_) out->emplace_back(prefix + name, tensor);
  }
  if (buffers) {
    for (const auto& [name, buffer] : buffers_) {
      if (!persistent_only || buffer.persistent) out->emplace_back(prefix + name, buffer.tensor);
    }
  }
  for (const auto& [name, child] : children_) {
    child->collect(prefix + name + ".", parameters, buffers, persistent_only, out);
  }
}

namespace {
// Keeps the first name of each tensor (tied weights are one parameter).
std::vector<std::pair<std::string, Tensor>> first_names(
    std::vector<std::pair<std::string, Tensor>> named) {
  std::set<const TensorImpl*> seen;
  std::vector<std::pair<std::string, Tensor>> unique;
  for (auto& entry : named) {
    if (seen.insert(entry.second.impl_ptr().get()).second) unique.push_back(std::move(entry));
  }
  return unique;
}
}  // namespace

std::vector<std::pair<std::string, Tensor>> Module::named_parameters() const {
  std::vector<std::pair<std::string, Tensor>> named;
  collect("", /*parameters=*/true, /*buffers=*/false, false, &named);
  return first_names(std::move(named));
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> tensors;
  for (auto& [name, tensor] : named_parameters()) tensors.push_back(tensor);
  return tensors;
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers() const {
  std::vector<std::pair<std::string, Tensor>> named;
  collect("", /*parameters=*/false, /*buffers=*/true, false, &named);
  return first_names(std::move(named));
}

std::vector<std::pair<std::string, Module*>> Module::named_modules() {
  std::vector<std::pair<std::string, Module*>> named = {{"", this}};
  for (const auto& [name, child] : children_) {
    for (auto& [child_name, module] : child->named_modules()) {
      named.emplace_back(child_name.empty() ? name : name + "." + child_name, module);
    }
  }
  return named;
}

int64_t Module::num_parameters() const {
  int64_t count = 0;
  for (const Tensor& p : parameters()) count += p.numel();
  return count;
}

void Module::zero_grad() {
  for (Tensor& p : parameters()) p.set_grad(Tensor());
}

void Module::train(bool training) {
  training_ = training;
  for (auto& [name, child] : children_) child->train(training);
}

StateDict Module::state_dict() const {
  std::vector<std::pair<std::string, Tensor>> named;
  collect("", /*parameters=*/true, /*buffers=*/true, /*persistent_only=*/true, &named);
  StateDict state;
  for (auto& [name, tensor] : named) state.emplace(name, tensor.detach());
  return state;
}

absl::Status Module::load_state_dict(const StateDict& state) {
  std::vector<std::pair<std::string, Tensor>> named;
  collect("", /*parameters=*/true, /*buffers=*/true, /*persistent_only=*/true, &named);
  // Check everything first, so that a bad checkpoint leaves the module as it was.
  std::vector<std::string> problems;
  std::set<std::string> expected;
  for (const auto& [name, tensor] : named) {
    expected.insert(name);
    auto found = state.find(name);
    if (found == state.end()) {
      problems.push_back(absl::StrCat("missing key '", name, "' (shape ",
                                      ShapeString(tensor.shape()), ")"));
    } else if (!found->second.defined()) {
      problems.push_back(absl::StrCat("key '", name, "' holds an undefined tensor"));
    } else if (found->second.shape() != tensor.shape()) {
      problems.push_back(absl::StrCat("shape mismatch for '", name, "': the state dict has ",
                                      ShapeString(found->second.shape()), ", the module expects ",
                                      ShapeString(tensor.shape())));
    } else if (is_floating(found->second.dtype()) != is_floating(tensor.dtype())) {
      // Float precisions convert (a bf16 checkpoint into f32 weights); integers never do.
      problems.push_back(absl::StrCat("dtype mismatch for '", name, "': the state dict has ",
                                      dtype_name(found->second.dtype()), ", the module expects ",
                                      dtype_name(tensor.dtype())));
    }
  }
  for (const auto& [name, tensor] : state) {
    if (!expected.count(name)) problems.push_back(absl::StrCat("unexpected key '", name, "'"));
  }
  if (!problems.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("load_state_dict: ", absl::StrJoin(problems, "; ")));
  }
  NoGradGuard no_grad;  // parameters are leaves that require grad
  for (auto& [name, tensor] : named) tensor.copy_(state.at(name));
  return absl::OkStatus();
}

void ModuleList::append(std::shared_ptr<Module> module) {
  register_module(std::to_string(modules_.size()), module);
  modules_.push_back(std::move(module));
}

}  // namespace sy
