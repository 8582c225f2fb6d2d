// A tiny corpus, its tokenizer and indexed dataset, and a small MoE config for them: what the
// trainer and command tests train on in well under a second per run.
#pragma once

#include <filesystem>
#include <string>

namespace sy::testing {

// Writes root/tokenizer/ and root/corpus.{bin,idx}; returns YAML for a 2-layer MoE over them
// (8 steps of global batch 8, validation every 4 steps, no TensorBoard, no progress line).
std::string prepare_tiny_run(const std::filesystem::path& root);
// The same YAML without writing anything (for ranks that share root with the one that wrote it).
std::string tiny_run_yaml(const std::filesystem::path& root);

}  // namespace sy::testing
