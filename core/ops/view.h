// View ops: results share storage with their input. The Tensor methods (view, transpose,
// ...) call these; each records its adjoint (reshape back, transpose back, sum_to, ...).
#pragma once

#include "core/tensor.h"

namespace sy {

Shape broadcast_shapes(const Shape& a, const Shape& b);

namespace detail {
// A view with explicit geometry, recording nothing (for kernels and ops internals).
Tensor as_strided(const Tensor& tensor, const Shape& shape, const Shape& strides, int64_t offset);
// Broadcast view of `tensor` to `shape` (stride 0 on expanded dims), recording nothing.
Tensor broadcast_to(const Tensor& tensor, const Shape& shape);
// Strides for viewing `tensor` as `shape` without a copy; false when impossible.
bool view_strides(const Tensor& tensor, const Shape& shape, Shape* strides);
// Resolves one -1 entry of `shape` against `numel`.
Shape infer_shape(const Shape& shape, int64_t numel);
}  // namespace detail

}  // namespace sy
