#include "core/io/module_weights.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "core/io/safetensors.h"

namespace sy {

absl::Status save_weights(const Module& module, const std::string& path,
                          const std::map<std::string, std::string>& metadata) {
  StateDict state = module.state_dict();
  std::vector<std::pair<std::string, Tensor>> tensors(state.begin(), state.end());
  return write_safetensors(path, tensors, metadata);
}

absl::Status load_weights(Module& module, const std::string& path) {
  absl::StatusOr<SafetensorsFile> file = read_safetensors(path);
  if (!file.ok()) return file.status();
  StateDict state(file->tensors.begin(), file->tensors.end());
  absl::Status status = module.load_state_dict(state);
  if (!status.ok()) return absl::Status(status.code(), absl::StrCat(path, ": ", status.message()));
  return absl::OkStatus();
}

}  // namespace sy
