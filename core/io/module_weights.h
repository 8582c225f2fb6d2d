// A module's weights as a safetensors file: its state_dict under its Hugging Face style
// names. Loading checks every name, shape and dtype kind before changing anything.
#pragma once

#include <map>
#include <string>

#include "absl/status/status.h"
#include "core/nn/module.h"

namespace sy {

absl::Status save_weights(const Module& module, const std::string& path,
                          const std::map<std::string, std::string>& metadata = {});

// Fails, leaving the module as it was, on an unreadable or damaged file, a missing or
// unexpected name, a shape mismatch, or an integer tensor where a float is expected; the
// message names the file and each key.
absl::Status load_weights(Module& module, const std::string& path);

}  // namespace sy
