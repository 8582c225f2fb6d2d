// Runs a PyTorch script on our tensors: inputs go to a temporary directory as .npy files,
// `<python> tests/reference/<script> <dir>` writes its outputs there as .npy, and they come
// back as f64 tensors. Tests skip (GTEST_SKIP) when no python can import torch.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/tensor.h"

namespace sy::testing {

// A python that imports torch and numpy: /usr/bin/python3 first, then python3 on PATH.
// Empty when there is none; `reason` then says what was tried.
struct TorchPython {
  std::string path;
  std::string reason;
};
const TorchPython& find_torch_python();

// .npy (format version 1.0/2.0/3.0, C order, little-endian f8/f4/i8/i4/b1) to and from tensors.
absl::Status write_npy(const std::string& path, const Tensor& tensor);
absl::StatusOr<Tensor> read_npy(const std::string& path);

// One case of a reference run: its input tensors and the names of the outputs to read back.
struct TorchCase {
  std::map<std::string, Tensor> inputs;
  std::vector<std::string> outputs;
};
using TorchOutputs = std::map<std::string, Tensor>;

// Writes case i's inputs as <dir>/<i>.<name>.npy (floating as f64, integers as i64) and the
// case count as <dir>/cases.npy, runs the script from tests/reference/ once with the
// directory as its argument (torch is imported once for all cases), and reads back
// <dir>/<i>.<name>.npy for each output name (as f64 or i64). Fails with the script's output.
absl::StatusOr<std::vector<TorchOutputs>> run_torch_reference(const std::string& script,
                                                              const std::vector<TorchCase>& cases);

}  // namespace sy::testing

// Skips the current test when no torch python is available.
#define SY_REQUIRE_TORCH()                                                            \
  do {                                                                                \
    if (::sy::testing::find_torch_python().path.empty()) {                            \
      GTEST_SKIP() << ::sy::testing::find_torch_python().reason;                      \
    }                                                                                 \
  } while (0)
