// `switchyard upcycle`: a dense model (a Switchyard checkpoint, or a Hugging Face Llama-style
// safetensors file with its config.json) into a step-0 Switchyard checkpoint of the MoE model
// a train YAML describes, for `checkpoint.load` in a later `switchyard train` (moe/upcycle.h).
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace sy {

// Runs the subcommand on `args` (after "upcycle"); the plan and help go to `out`. Everything is
// read and checked before anything is written; the output folder appears whole or not at all.
absl::Status upcycle_command(const std::vector<std::string>& args, std::FILE* out);

// The CLI entry: on failure prints `switchyard upcycle: <message>` and returns 1.
int run_upcycle(const std::vector<std::string>& args);

}  // namespace sy
