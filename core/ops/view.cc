// View ops and their adjoints. A view shares its input's storage and version counter.
#include "core/ops/view.h"

#include <algorithm>
#include <numeric>

#include "core/autograd/node.h"

namespace sy {

Shape broadcast_shapes(const Shape& a, const Shape& b) {
  size_t dims = std::max(a.size(), b.size());
  Shape out(dims);
  for (size_t i = 0; i < dims; ++i) {
    int64_t x = i < dims - a.size() ? 1 : a[i - (dims - a.size())];
    int64_t y = i < dims - b.size() ? 1 : b[i - (dims - b.size())];
    SY_CHECK(x == y || x == 1 || y == 1, "shapes ", ShapeString(a), " and ", ShapeString(b),
             " do not broadcast");
    out[i] = x == 1 ? y : x;
  }
  return out;
}

namespace detail {

Tensor as_strided(const Tensor& tensor, const Shape& shape, const Shape& strides, int64_t offset) {
  return Tensor::from_storage(tensor.storage(), shape, strides, offset, tensor.dtype());
}

Tensor broadcast_to(const Tensor& tensor, const Shape& shape) {
  if (tensor.shape() == shape) return tensor;
  int64_t leading = static_cast<int64_t>(shape.size()) - tensor.dim();
  SY_CHECK(leading >= 0, "cannot expand ", ShapeString(tensor.shape()), " to ", ShapeString(shape));
  Shape strides(shape.size(), 0);
  for (int64_t d = 0; d < tensor.dim(); ++d) {
    int64_t size = tensor.size(d);
    SY_CHECK(size == shape[leading + d] || size == 1, "cannot expand ", ShapeString(tensor.shape()),
             " to ", ShapeString(shape));
    strides[leading + d] = size == 1 && shape[leading + d] != 1 ? 0 : tensor.stride(d);
  }
  return as_strided(tensor, shape, strides, tensor.offset());
}

Shape infer_shape(const Shape& shape, int64_t numel) {
  Shape out = shape;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      SY_CHECK(infer < 0, "only one dimension can be -1 in ", ShapeString(shape));
      infer = static_cast<int64_t>(i);
    } else {
      known *= out[i];
    }
  }
  if (infer >= 0) {
    SY_CHECK(known != 0 && numel % known == 0, "cannot view ", numel, " elements as ", ShapeString(shape));
    out[infer] = numel / known;
  }
  SY_CHECK(shape_numel(out) == numel, "cannot view ", numel, " elements as ", ShapeString(shape));
  return out;
}

bool view_strides(const Tensor& tensor, const Shape& shape, Shape* strides) {
  // Old dims that are contiguous among themselves form chunks; the new shape must split
  // each chunk into dims of the same element count (the rule torch.view follows).
  const Shape& old_shape = tensor.shape();
  const Shape& old_strides = tensor.strides();
  strides->assign(shape.size(), 0);
  if (tensor.numel() == 0 || old_shape.empty()) {
    *strides = contiguous_strides(shape);
    return true;
  }
  int64_t new_dim = static_cast<int64_t>(shape.size()) - 1;
  int64_t chunk_stride = old_strides.back();
  int64_t old_count = 1, new_count = 1;
  for (int64_t old_dim = static_cast<int64_t>(old_shape.size()) - 1; old_dim >= 0; --old_dim) {
    old_count *= old_shape[old_dim];
    bool chunk_ends = old_dim == 0 || (old_shape[old_dim - 1] != 1 &&
                                       old_strides[old_dim - 1] != old_count * chunk_stride);
    if (!chunk_ends) continue;
    while (new_dim >= 0 && (new_count < old_count || shape[new_dim] == 1)) {
      (*strides)[new_dim] = new_count * chunk_stride;
      new_count *= shape[new_dim];
      --new_dim;
    }
    if (new_count != old_count) return false;
    if (old_dim > 0) {
      chunk_stride = old_strides[old_dim - 1];
      old_count = 1;
      new_count = 1;
    }
  }
  return new_dim == -1;
}

}  // namespace detail

Tensor Tensor::view(const Shape& requested) const {
  Shape shape = detail::infer_shape(requested, numel());
  Shape strides;
  SY_CHECK(detail::view_strides(*this, shape, &strides), "view: cannot view ",
           ShapeString(this->shape()), " with strides ", ShapeString(this->strides()), " as ",
           ShapeString(shape), " without a copy; use reshape");
  Tensor out = detail::as_strided(*this, shape, strides, offset());
  Shape input_shape = this->shape();
  record("ViewBackward", {*this}, {out}, [input_shape](const std::vector<Tensor>& grads) {
    return std::vector<Tensor>{grads[0].reshape(input_shape)};
  });
  return out;
}

Tensor Tensor::reshape(const Shape& requested) const {
  Shape shape = detail::infer_shape(requested, numel());
  Shape strides;
  if (detail::view_strides(*this, shape, &strides)) return view(shape);
  return contiguous().view(shape);
}

Tensor Tensor::flatten(int64_t start_dim, int64_t end_dim) const {
  if (dim() == 0) return reshape({1});
  start_dim = wrap_dim(start_dim);
  end_dim = wrap_dim(end_dim);
  Shape shape(this->shape().begin(), this->shape().begin() + start_dim);
  int64_t merged = 1;
  for (int64_t d = start_dim; d <= end_dim; ++d) merged *= size(d);
  shape.push_back(merged);
  shape.insert(shape.end(), this->shape().begin() + end_dim + 1, this->shape().end());
  return reshape(shape);
}

Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
  SY_CHECK(static_cast<int64_t>(dims.size()) == dim(), "permute: ", dims.size(), " dims for a ",
           dim(), "-d tensor");
  Shape shape(dims.size()), strides(dims.size());
  std::vector<int64_t> inverse(dims.size(), -1);
  for (size_t i = 0; i < dims.size(); ++i) {
    int64_t d = wrap_dim(dims[i]);
    SY_CHECK(inverse[d] < 0, "permute: dimension ", d, " repeated");
    inverse[d] = static_cast<int64_t>(i);
    shape[i] = size(d);
    strides[i] = stride(d);
  }
  Tensor out = detail::as_strided(*this, shape, strides, offset());
  record("PermuteBackward", {*this}, {out}, [inverse](const std::vector<Tensor>& grads) {
    return std::vector<Tensor>{grads[0].permute(inverse)};
  });
  return out;
}

Tensor Tensor::transpose(int64_t dim0, int64_t dim1) const {
  std::vector<int64_t> dims(this->dim());
  std::iota(dims.begin(), dims.end(), 0);
  std::swap(dims[wrap_dim(dim0)], dims[wrap_dim(dim1)]);
  return permute(dims);
}

Tensor Tensor::narrow(int64_t dim, int64_t start, int64_t length) const {
  dim = wrap_dim(dim);
  SY_CHECK(start >= 0 && length >= 0 && start + length <= size(dim), "narrow: [", start, ", ",
           start + length, ") out of range for dimension ", dim, " of size ", size(dim));
  Shape shape = this->shape();
  shape[dim] = length;
  Tensor out = detail::as_strided(*this, shape, strides(), offset() + start * stride(dim));
  Shape input_shape = this->shape();
  record("NarrowBackward", {*this}, {out},
         [input_shape, dim, start, length](const std::vector<Tensor>& grads) {
           Tensor grad = Tensor::zeros(input_shape, grads[0].dtype(), grads[0].device());
           Tensor window = detail::as_strided(grad, grads[0].shape(), grad.strides(),
                                              start * grad.stride(dim));
           window.copy_(grads[0]);
           (void)length;
           return std::vector<Tensor>{grad};
         });
  return out;
}

Tensor Tensor::slice(int64_t dim, int64_t start, int64_t end) const {
  dim = wrap_dim(dim);
  if (start < 0) start += size(dim);
  if (end < 0) end += size(dim);
  end = std::min(end, size(dim));
  return narrow(dim, start, std::max<int64_t>(end - start, 0));
}

Tensor Tensor::select(int64_t dim, int64_t index) const {
  dim = wrap_dim(dim);
  if (index < 0) index += size(dim);
  return narrow(dim, index, 1).squeeze(dim);
}

Tensor Tensor::expand(const Shape& requested) const {
  Shape shape = requested;
  int64_t leading = static_cast<int64_t>(shape.size()) - dim();
  for (int64_t d = 0; d < dim(); ++d) {
    if (shape[leading + d] == -1) shape[leading + d] = size(d);
  }
  Tensor out = detail::broadcast_to(*this, shape);
  if (out.same(*this)) out = detail::as_strided(*this, shape, strides(), offset());
  Shape input_shape = this->shape();
  record("ExpandBackward", {*this}, {out}, [input_shape](const std::vector<Tensor>& grads) {
    return std::vector<Tensor>{sum_to(grads[0], input_shape)};
  });
  return out;
}

Tensor Tensor::squeeze(int64_t dim) const {
  dim = wrap_dim(dim);
  if (size(dim) != 1) return view(shape());
  Shape shape = this->shape();
  shape.erase(shape.begin() + dim);
  return view(shape);
}

Tensor Tensor::unsqueeze(int64_t dim) const {
  int64_t d = dim < 0 ? dim + this->dim() + 1 : dim;
  SY_CHECK(d >= 0 && d <= this->dim(), "unsqueeze: dimension ", dim, " out of range for a ",
           this->dim(), "-d tensor");
  Shape shape = this->shape();
  shape.insert(shape.begin() + d, 1);
  return view(shape);
}

}  // namespace sy
