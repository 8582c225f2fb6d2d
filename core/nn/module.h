// Module: the base of nn layers. A module owns named parameters (leaf tensors that require
// grad), buffers (tensors without gradient, e.g. rotary tables) and child modules, so every
// parameter has a stable Hugging Face style name (`layers.3.mlp.gate_proj.weight`) that
// checkpoints, upcycling and reference tests agree on.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "core/tensor.h"

namespace sy {

// Parameters and persistent buffers by full name (ordered, so iteration is deterministic).
using StateDict = std::map<std::string, Tensor>;

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  // Subclasses hold handles to their parameters and children: a copy would alias them.
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Full names in registration order, depth first (a module's own tensors before its
  // children's). A tensor registered under two names (tied weights) appears once.
  std::vector<std::pair<std::string, Tensor>> named_parameters() const;
  std::vector<Tensor> parameters() const;
  std::vector<std::pair<std::string, Tensor>> named_buffers() const;
  // Every descendant with its full name ("" for this module), this module first.
  std::vector<std::pair<std::string, Module*>> named_modules();
  int64_t num_parameters() const;

  // Drops the accumulated gradients (undefined .grad(), as after construction).
  void zero_grad();

  // Training mode (dropout on) for this module and every descendant.
  void train(bool training = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Moves every parameter, buffer (and accumulated gradient) of this module and its descendants
  // to `device`. The move swaps the storage of each tensor in place, so every handle to it (a
  // subclass's `weight_`, a tied weight, an optimizer's list) sees the new device, and parameters
  // stay leaves that require grad. Views held apart from the registered tensors do not follow.
  void to(Device device);

  // Parameters and persistent buffers, sharing storage with the module.
  StateDict state_dict() const;
  // Copies every entry of `state` into the module (converting dtype and device). Fails,
  // changing nothing, when a name is missing from `state`, `state` has a name the module
  // lacks, or a shape differs; the message names each key and both shapes.
  absl::Status load_state_dict(const StateDict& state);

 protected:
  // Registers a tensor as a parameter (made a leaf that requires grad) and returns it.
  Tensor register_parameter(const std::string& name, Tensor tensor);
  // A buffer gets no gradient; a non-persistent one stays out of state_dict (derived data).
  Tensor register_buffer(const std::string& name, Tensor tensor, bool persistent = true);
  template <typename ModuleType>
  std::shared_ptr<ModuleType> register_module(const std::string& name,
                                              std::shared_ptr<ModuleType> module) {
    add_child(name, module);
    return module;
  }

 private:
  struct Buffer {
    Tensor tensor;
    bool persistent;
  };
  void check_new_name(const std::string& name) const;
  void add_child(const std::string& name, std::shared_ptr<Module> module);
  void collect(const std::string& prefix, bool parameters, bool buffers, bool persistent_only,
               std::vector<std::pair<std::string, Tensor>>* out) const;

  bool training_ = true;
  std::vector<std::pair<std::string, Tensor>> parameters_;
  std::vector<std::pair<std::string, Buffer>> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

// Children named 0, 1, 2, ... (`layers.3.…`).
class ModuleList : public Module {
 public:
  void append(std::shared_ptr<Module> module);
  int64_t size() const { return static_cast<int64_t>(modules_.size()); }
  Module& operator[](int64_t index) const { return *modules_.at(index); }
  template <typename ModuleType>
  ModuleType& at(int64_t index) const {
    return dynamic_cast<ModuleType&>(*modules_.at(index));
  }

 private:
  std::vector<std::shared_ptr<Module>> modules_;
};

}  // namespace sy
