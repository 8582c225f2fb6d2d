// cat copies each input into its slice of a fresh tensor (its backward hands each input the
// narrow of the gradient); stack is unsqueeze + cat; split and chunk are narrow views, so
// their gradients flow through narrow's backward.
#include "core/ops/shape.h"

#include <algorithm>

#include "core/autograd/node.h"
#include "core/ops/view.h"

namespace sy {

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim) {
  SY_CHECK(!tensors.empty(), "cat: no tensors");
  const Tensor& first = tensors[0];
  dim = first.wrap_dim(dim);
  DType dtype = first.dtype();
  Shape shape = first.shape();
  shape[dim] = 0;
  for (const Tensor& tensor : tensors) {
    SY_CHECK(tensor.device() == first.device(), "cat: tensors on ", first.device().to_string(), " and ",
             tensor.device().to_string());
    bool fits = tensor.dim() == first.dim();
    for (int64_t d = 0; fits && d < first.dim(); ++d) fits = d == dim || tensor.size(d) == first.size(d);
    SY_CHECK(fits, "cat: ", ShapeString(tensor.shape()), " does not match ", ShapeString(first.shape()),
             " except in dimension ", dim);
    dtype = promote_types(dtype, tensor.dtype());
    shape[dim] += tensor.size(dim);
  }
  Tensor out = Tensor::empty(shape, dtype, first.device());
  std::vector<int64_t> starts;
  int64_t start = 0;
  for (const Tensor& tensor : tensors) {
    starts.push_back(start);
    Tensor slot = detail::as_strided(out, tensor.shape(), out.strides(), start * out.stride(dim));
    slot.copy_(tensor.detach());
    start += tensor.size(dim);
  }
  std::vector<Shape> shapes;
  std::vector<DType> dtypes;
  for (const Tensor& tensor : tensors) {
    shapes.push_back(tensor.shape());
    dtypes.push_back(tensor.dtype());
  }
  record("CatBackward", tensors, {out}, [dim, starts, shapes, dtypes](const std::vector<Tensor>& g) {
    std::vector<Tensor> grads;
    for (size_t i = 0; i < shapes.size(); ++i) {
      grads.push_back(is_floating(dtypes[i]) ? g[0].narrow(dim, starts[i], shapes[i][dim]).to(dtypes[i])
                                             : Tensor());
    }
    return grads;
  });
  return out;
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  SY_CHECK(!tensors.empty(), "stack: no tensors");
  const int64_t rank = tensors[0].dim();
  const int64_t wrapped = dim < 0 ? dim + rank + 1 : dim;
  SY_CHECK(wrapped >= 0 && wrapped <= rank, "stack: dimension ", dim, " out of range for ", rank,
           "-d tensors");
  std::vector<Tensor> expanded;
  for (const Tensor& tensor : tensors) {
    SY_CHECK(tensor.shape() == tensors[0].shape(), "stack: shapes ", ShapeString(tensors[0].shape()),
             " and ", ShapeString(tensor.shape()), " differ");
    expanded.push_back(tensor.unsqueeze(wrapped));
  }
  return cat(expanded, wrapped);
}

std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim) {
  dim = x.wrap_dim(dim);
  const int64_t size = x.size(dim);
  SY_CHECK(split_size > 0 || size == 0, "split: split_size ", split_size, " for dimension ", dim,
           " of size ", size, " in ", ShapeString(x.shape()));
  if (size == 0) return {x.narrow(dim, 0, 0)};
  std::vector<Tensor> pieces;
  for (int64_t start = 0; start < size; start += split_size) {
    pieces.push_back(x.narrow(dim, start, std::min(split_size, size - start)));
  }
  return pieces;
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  dim = x.wrap_dim(dim);
  int64_t total = 0;
  for (int64_t size : sizes) {
    SY_CHECK(size >= 0, "split: negative size ", size);
    total += size;
  }
  SY_CHECK(total == x.size(dim), "split: sizes sum to ", total, " but dimension ", dim, " of ",
           ShapeString(x.shape()), " has ", x.size(dim));
  std::vector<Tensor> pieces;
  int64_t start = 0;
  for (int64_t size : sizes) {
    pieces.push_back(x.narrow(dim, start, size));
    start += size;
  }
  return pieces;
}

std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim) {
  SY_CHECK(chunks > 0, "chunk: chunks must be positive, got ", chunks);
  dim = x.wrap_dim(dim);
  const int64_t size = x.size(dim);
  if (size == 0) {
    std::vector<Tensor> pieces;
    for (int64_t i = 0; i < chunks; ++i) pieces.push_back(x.narrow(dim, 0, 0));
    return pieces;
  }
  // As torch: every piece has ceil(size / chunks), so there may be fewer than `chunks`.
  return split(x, (size + chunks - 1) / chunks, dim);
}

}  // namespace sy
