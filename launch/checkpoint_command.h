// `switchyard checkpoint export <dir> <out.safetensors>`: a checkpoint's model tensors, whatever
// rank layout saved them, as one safetensors file of whole tensors (for inspection or other tools).
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace sy {

// Runs the subcommand on `args` (after "checkpoint"); progress and help go to `out`.
absl::Status checkpoint_command(const std::vector<std::string>& args, std::FILE* out);

// The CLI entry: on failure prints `switchyard checkpoint: <message>` and returns 1.
int run_checkpoint(const std::vector<std::string>& args);

}  // namespace sy
