// safetensors files (the Hugging Face format): an 8-byte little-endian header length, a
// JSON header mapping each tensor name to {dtype, shape, data_offsets} (plus an optional
// "__metadata__" map of strings), then the raw little-endian bytes. Reading checks every
// offset against the file; writing goes to a temporary name renamed into place, so an
// existing file is never left half-written.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/tensor.h"

namespace sy {

struct SafetensorsFile {
  // In the file's data order (by offset).
  std::vector<std::pair<std::string, Tensor>> tensors;
  std::map<std::string, std::string> metadata;

  // The tensor called `name`, or NotFound naming the file's tensors.
  absl::StatusOr<Tensor> get(const std::string& name) const;
};

absl::StatusOr<SafetensorsFile> read_safetensors(const std::string& path);

// Tensors are written contiguous, in the order given, from any device.
absl::Status write_safetensors(const std::string& path,
                               const std::vector<std::pair<std::string, Tensor>>& tensors,
                               const std::map<std::string, std::string>& metadata = {});

// The safetensors dtype code ("F32", "BF16", ...) of a dtype, and back.
const char* safetensors_dtype(DType dtype);
absl::StatusOr<DType> dtype_from_safetensors(const std::string& code);

}  // namespace sy
