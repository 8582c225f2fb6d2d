// Box arithmetic for sharded checkpoints (launch/checkpoint_shards.h): intersections of boxes,
// the tiling check, and a byte copy of one box of a contiguous tensor into another.
#include "launch/checkpoint_shards.h"

#include <algorithm>
#include <cstring>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/check.h"

namespace sy {
namespace {

int64_t volume(const Shape& sizes) {
  int64_t count = 1;
  for (int64_t size : sizes) count *= size;
  return count;
}

// The common part of two boxes of the same tensor, or nothing when they share no element.
std::optional<TensorRegion> intersect(const TensorRegion& a, const TensorRegion& b) {
  TensorRegion common;
  for (size_t d = 0; d < a.sizes.size(); ++d) {
    const int64_t begin = std::max(a.offsets[d], b.offsets[d]);
    const int64_t end = std::min(a.offsets[d] + a.sizes[d], b.offsets[d] + b.sizes[d]);
    if (end <= begin) return std::nullopt;
    common.offsets.push_back(begin);
    common.sizes.push_back(end - begin);
  }
  return common;
}

// Row-major strides, in elements, of a contiguous tensor of `sizes`.
std::vector<int64_t> strides_of(const Shape& sizes) {
  std::vector<int64_t> strides(sizes.size(), 1);
  for (int64_t d = static_cast<int64_t>(sizes.size()) - 2; d >= 0; --d) strides[d] = strides[d + 1] * sizes[d + 1];
  return strides;
}

// Copies `part` (global coordinates) from `source`, which holds box `from`, into `target`,
// which holds box `to`; both contiguous CPU tensors of one dtype. Rows along the last dim are
// contiguous in both, so each is one memcpy.
void copy_part(const Tensor& source, const TensorRegion& from, const Tensor& target, const TensorRegion& to,
               const TensorRegion& part) {
  const size_t element = element_size(source.dtype());
  const std::vector<int64_t> source_strides = strides_of(from.sizes), target_strides = strides_of(to.sizes);
  const size_t dims = part.sizes.size();
  const int64_t row = dims == 0 ? 1 : part.sizes.back();
  const char* source_bytes = static_cast<const char*>(source.data_ptr());
  char* target_bytes = static_cast<char*>(target.data_ptr());
  std::vector<int64_t> index(dims, 0);  // within `part`; the last dim stays 0
  while (true) {
    int64_t source_at = 0, target_at = 0;
    for (size_t d = 0; d < dims; ++d) {
      const int64_t position = part.offsets[d] + index[d];
      source_at += (position - from.offsets[d]) * source_strides[d];
      target_at += (position - to.offsets[d]) * target_strides[d];
    }
    std::memcpy(target_bytes + target_at * element, source_bytes + source_at * element, row * element);
    int64_t d = static_cast<int64_t>(dims) - 2;
    for (; d >= 0; --d) {
      if (++index[d] < part.sizes[d]) break;
      index[d] = 0;
    }
    if (d < 0) break;
  }
}

absl::Status check_inside(const std::string& name, const Shape& global_shape, const TensorRegion& region,
                          const char* what) {
  bool inside = region.offsets.size() == global_shape.size() && region.sizes.size() == global_shape.size();
  for (size_t d = 0; inside && d < global_shape.size(); ++d) {
    inside = region.offsets[d] >= 0 && region.sizes[d] >= 0 && region.offsets[d] + region.sizes[d] <= global_shape[d];
  }
  if (inside) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("tensor ", name, ": ", what, " ", region_string(region),
                                                 " does not lie inside its global shape ",
                                                 ShapeString(global_shape)));
}

}  // namespace

std::string region_string(const TensorRegion& region) {
  std::vector<std::string> ranges;
  for (size_t d = 0; d < region.offsets.size() && d < region.sizes.size(); ++d) {
    ranges.push_back(absl::StrCat(region.offsets[d], ":", region.offsets[d] + region.sizes[d]));
  }
  return absl::StrCat("[", absl::StrJoin(ranges, ", "), "]");
}

TensorRegion whole_region(const Shape& shape) { return TensorRegion{std::vector<int64_t>(shape.size(), 0), shape}; }

absl::Status check_tiling(const std::string& name, const Shape& global_shape, const std::vector<TensorRegion>& blocks) {
  int64_t covered = 0;
  for (size_t i = 0; i < blocks.size(); ++i) {
    if (absl::Status status = check_inside(name, global_shape, blocks[i], "the block"); !status.ok()) return status;
    for (size_t j = 0; j < i; ++j) {
      // Empty blocks share no element with anything.
      if (volume(blocks[i].sizes) > 0 && volume(blocks[j].sizes) > 0 && intersect(blocks[i], blocks[j])) {
        return absl::DataLossError(absl::StrCat("tensor ", name, ": the blocks ", region_string(blocks[j]), " and ",
                                                region_string(blocks[i]), " overlap"));
      }
    }
    covered += volume(blocks[i].sizes);
  }
  if (covered != volume(global_shape)) {
    return absl::DataLossError(absl::StrCat("tensor ", name, " ", ShapeString(global_shape), ": its ", blocks.size(),
                                            " blocks cover ", covered, " of its ", volume(global_shape),
                                            " elements (a block is missing)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Tensor> assemble_region(const std::string& name, const Shape& global_shape, DType dtype,
                                       const std::vector<TensorRegion>& blocks,
                                       const std::function<absl::StatusOr<Tensor>(size_t)>& read,
                                       const TensorRegion& wanted) {
  if (absl::Status status = check_tiling(name, global_shape, blocks); !status.ok()) return status;
  if (absl::Status status = check_inside(name, global_shape, wanted, "the wanted box"); !status.ok()) return status;
  Tensor result = Tensor::empty(wanted.sizes, dtype);
  if (volume(wanted.sizes) == 0) return result;
  for (size_t i = 0; i < blocks.size(); ++i) {
    if (volume(blocks[i].sizes) == 0) continue;
    std::optional<TensorRegion> part = intersect(blocks[i], wanted);
    if (!part) continue;
    absl::StatusOr<Tensor> values = read(i);
    if (!values.ok()) return values.status();
    if (values->shape() != blocks[i].sizes || values->dtype() != dtype) {
      return absl::DataLossError(absl::StrCat("tensor ", name, ": the block ", region_string(blocks[i]), " is ",
                                              dtype_name(values->dtype()), " ", ShapeString(values->shape()),
                                              ", expected ", dtype_name(dtype), " ", ShapeString(blocks[i].sizes)));
    }
    copy_part(values->detach().to(Device::CPU()).contiguous(), blocks[i], result, wanted, *part);
  }
  return result;
}

}  // namespace sy
