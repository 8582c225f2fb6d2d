// Boxes of tensors for sharded checkpoints: checking that the saved blocks of a tensor tile it
// exactly, and assembling the box a rank holds now from whichever saved blocks overlap it
// (resharding between rank layouts). Used by launch/checkpoint.cc.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/tensor.h"

namespace sy {

// A box of a tensor: per dim, elements [offsets[d], offsets[d] + sizes[d]).
struct TensorRegion {
  std::vector<int64_t> offsets;
  Shape sizes;
};

// "[0:2, 0:16]": the index ranges, for messages.
std::string region_string(const TensorRegion& region);

// The whole of a tensor of `shape`.
TensorRegion whole_region(const Shape& shape);

// OK when `blocks` lie inside `global_shape` and cover it with neither gap nor overlap; the
// error names the tensor and the offending blocks.
absl::Status check_tiling(const std::string& name, const Shape& global_shape, const std::vector<TensorRegion>& blocks);

// The `wanted` box of tensor `name` (of `global_shape` and `dtype`), copied from the saved
// `blocks`, which must tile the tensor. read(i) gives block i's values (shape blocks[i].sizes,
// `dtype`; checked) and is called only for blocks that overlap `wanted`. The result is a
// contiguous CPU tensor of shape wanted.sizes.
absl::StatusOr<Tensor> assemble_region(const std::string& name, const Shape& global_shape, DType dtype,
                                       const std::vector<TensorRegion>& blocks,
                                       const std::function<absl::StatusOr<Tensor>(size_t)>& read,
                                       const TensorRegion& wanted);

}  // namespace sy
