// Tensor: a cheap handle (shared pointer) to a view — shape, strides, offset, dtype — over
// reference-counted Storage on a device. Views share storage; contiguous() copies only when
// needed. Autograd state (requires_grad, grad, grad_fn) lives on the viewed TensorImpl.
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/device.h"
#include "core/dtype.h"
#include "core/shapes.h"
#include "core/storage.h"

namespace sy {

class Tensor;
class Node;

// Called after a leaf's .grad() has been accumulated for one backward pass.
using PostAccumulateGradHook = std::function<void(Tensor& leaf)>;

struct AutogradMeta {
  bool requires_grad = false;
  std::shared_ptr<Tensor> grad;
  std::shared_ptr<Node> grad_fn;
  uint32_t output_nr = 0;
  std::weak_ptr<Node> grad_accumulator;  // shared by every use of a leaf
  std::vector<PostAccumulateGradHook> post_accumulate_grad_hooks;
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;  // in elements
  int64_t offset = 0;  // in elements
  DType dtype = DType::kF32;
  AutogradMeta autograd;
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- factories ----
  static Tensor empty(const Shape& shape, DType dtype = DType::kF32, Device device = Device::CPU());
  static Tensor zeros(const Shape& shape, DType dtype = DType::kF32, Device device = Device::CPU());
  static Tensor ones(const Shape& shape, DType dtype = DType::kF32, Device device = Device::CPU());
  static Tensor full(const Shape& shape, double value, DType dtype = DType::kF32,
                     Device device = Device::CPU());
  static Tensor scalar(double value, DType dtype = DType::kF32, Device device = Device::CPU());
  static Tensor arange(int64_t end, DType dtype = DType::kI64, Device device = Device::CPU());
  // Copies `values` (converted to `dtype`) into a new contiguous CPU tensor of `shape`.
  template <typename T>
  static Tensor from_vector(const std::vector<T>& values, const Shape& shape,
                            DType dtype = DType::kF32);
  // A view over existing storage (for kernels and collectives).
  static Tensor from_storage(std::shared_ptr<Storage> storage, const Shape& shape,
                             const Shape& strides, int64_t offset, DType dtype);

  // ---- metadata ----
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  const Shape& strides() const { return impl().strides; }
  int64_t size(int64_t dim) const;
  int64_t stride(int64_t dim) const;
  int64_t dim() const { return static_cast<int64_t>(impl().shape.size()); }
  int64_t numel() const;
  int64_t offset() const { return impl().offset; }
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().storage->device(); }
  bool is_contiguous() const;
  const std::shared_ptr<Storage>& storage() const { return impl().storage; }
  size_t nbytes() const { return static_cast<size_t>(numel()) * element_size(dtype()); }
  // Pointer to the first element of the view.
  void* data_ptr() const;
  template <typename T>
  T* data() const { return static_cast<T*>(data_ptr()); }
  // Normalizes a possibly negative dimension index against dim(), checking its range.
  int64_t wrap_dim(int64_t dim) const;

  // ---- views (share storage; differentiable) ----
  Tensor view(const Shape& shape) const;     // requires a compatible stride layout
  Tensor reshape(const Shape& shape) const;  // a view where possible, else a copy
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;
  Tensor transpose(int64_t dim0, int64_t dim1) const;
  Tensor t() const { return transpose(0, 1); }
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end) const;
  Tensor select(int64_t dim, int64_t index) const;
  Tensor expand(const Shape& shape) const;
  Tensor squeeze(int64_t dim) const;
  Tensor unsqueeze(int64_t dim) const;

  // ---- copies and conversions (differentiable) ----
  Tensor contiguous() const;
  Tensor clone() const;
  Tensor to(DType dtype) const;
  Tensor to(Device device) const;
  // Shares storage, drops autograd history.
  Tensor detach() const;

  // ---- element access ----
  double item() const;
  template <typename T>
  T item() const { return static_cast<T>(item()); }
  template <typename T>
  std::vector<T> to_vector() const;

  // ---- in place (bump the version counter; never recorded by autograd) ----
  Tensor& fill_(double value);
  Tensor& zero_() { return fill_(0.0); }
  Tensor& copy_(const Tensor& source);  // broadcasts and converts dtype/device
  Tensor& add_(const Tensor& other, double alpha = 1.0);
  Tensor& mul_(double factor);

  // ---- autograd ----
  bool requires_grad() const;
  Tensor& set_requires_grad(bool requires_grad);
  // The accumulated gradient of a leaf (undefined before the first backward).
  Tensor grad() const;
  void set_grad(const Tensor& grad);
  const std::shared_ptr<Node>& grad_fn() const { return impl().autograd.grad_fn; }
  uint32_t output_nr() const { return impl().autograd.output_nr; }
  bool is_leaf() const { return impl().autograd.grad_fn == nullptr; }
  void backward(const Tensor& gradient = Tensor(), bool retain_graph = false) const;
  void register_post_accumulate_grad_hook(PostAccumulateGradHook hook);
  uint64_t version() const { return impl().storage->version(); }
  void bump_version() const { impl().storage->BumpVersion(); }

  std::string to_string() const;
  TensorImpl& impl() const {
    SY_CHECK(impl_ != nullptr, "use of an undefined tensor");
    return *impl_;
  }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same(const Tensor& other) const { return impl_ == other.impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& tensor);

Shape contiguous_strides(const Shape& shape);
int64_t shape_numel(const Shape& shape);

// Arithmetic operators forward to the ops in core/ops/elementwise.h.
Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a);
Tensor operator+(const Tensor& a, double b);
Tensor operator-(const Tensor& a, double b);
Tensor operator*(const Tensor& a, double b);
Tensor operator/(const Tensor& a, double b);
Tensor operator*(double a, const Tensor& b);
Tensor operator+(double a, const Tensor& b);
Tensor operator-(double a, const Tensor& b);

namespace detail {
void copy_from_host(Tensor& destination, const void* source, DType source_dtype);
std::vector<double> to_double_vector(const Tensor& tensor);
}  // namespace detail

template <typename T>
Tensor Tensor::from_vector(const std::vector<T>& values, const Shape& shape, DType dtype) {
  SY_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape), "from_vector: ",
           values.size(), " values for shape ", ShapeString(shape));
  std::vector<double> as_double(values.begin(), values.end());
  Tensor out = empty(shape, dtype);
  detail::copy_from_host(out, as_double.data(), DType::kF64);
  return out;
}

template <typename T>
std::vector<T> Tensor::to_vector() const {
  std::vector<double> values = detail::to_double_vector(*this);
  return std::vector<T>(values.begin(), values.end());
}

}  // namespace sy
