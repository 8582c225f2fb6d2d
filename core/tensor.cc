#include "core/tensor.h"

#include <cmath>
#include <cstring>
#include <ostream>
#include <sstream>

#include "core/autograd/engine.h"
#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/kernels/cpu/cpu_kernels.h"
#include "core/ops/dispatch.h"
#include "core/ops/elementwise.h"
#include "core/ops/view.h"

namespace sy {

Shape contiguous_strides(const Shape& shape) {
  Shape strides(shape.size());
  int64_t stride = 1;
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    strides[d] = stride;
    stride *= std::max<int64_t>(shape[d], 1);
  }
  return strides;
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

// ---- factories ----

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t s : shape) SY_CHECK(s >= 0, "negative size in shape ", ShapeString(shape));
  size_t nbytes = static_cast<size_t>(shape_numel(shape)) * element_size(dtype);
  auto storage = std::make_shared<Storage>(nbytes, allocator_for(device));
  return from_storage(std::move(storage), shape, contiguous_strides(shape), 0, dtype);
}

Tensor Tensor::from_storage(std::shared_ptr<Storage> storage, const Shape& shape,
                            const Shape& strides, int64_t offset, DType dtype) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::move(storage);
  impl->shape = shape;
  impl->strides = strides;
  impl->offset = offset;
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor out = empty(shape, dtype, device);
  out.fill_(value);
  return out;
}
Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) { return full(shape, 0.0, dtype, device); }
Tensor Tensor::ones(const Shape& shape, DType dtype, Device device) { return full(shape, 1.0, dtype, device); }
Tensor Tensor::scalar(double value, DType dtype, Device device) { return full({}, value, dtype, device); }

Tensor Tensor::arange(int64_t end, DType dtype, Device device) {
  std::vector<double> values(end);
  for (int64_t i = 0; i < end; ++i) values[i] = static_cast<double>(i);
  return from_vector(values, {end}, dtype).to(device);
}

// ---- metadata ----

int64_t Tensor::wrap_dim(int64_t d) const {
  int64_t n = dim();
  int64_t wrapped = d < 0 ? d + n : d;
  SY_CHECK(wrapped >= 0 && wrapped < std::max<int64_t>(n, 1), "dimension ", d,
           " out of range for a tensor of shape ", ShapeString(shape()));
  return wrapped;
}

int64_t Tensor::size(int64_t d) const { return shape()[wrap_dim(d)]; }
int64_t Tensor::stride(int64_t d) const { return strides()[wrap_dim(d)]; }
int64_t Tensor::numel() const { return shape_numel(shape()); }

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (int64_t d = dim() - 1; d >= 0; --d) {
    if (size(d) == 1) continue;
    if (stride(d) != expected) return false;
    expected *= size(d);
  }
  return true;
}

void* Tensor::data_ptr() const {
  return static_cast<char*>(storage()->data()) + offset() * static_cast<int64_t>(element_size(dtype()));
}

// ---- copies and conversions ----

namespace {

// out = source (same shape, any dtype/device), recording nothing.
void copy_raw(const Tensor& source, Tensor& out) {
  if (source.device().is_cpu() && out.device().is_cpu()) {
    kernels::cpu::copy(source, out);
    return;
  }
  SY_CUDA_KERNEL("copy", kernels::cuda::copy(source, out));
}

Tensor copy_to(const Tensor& source, DType dtype, Device device) {
  Tensor out = Tensor::empty(source.shape(), dtype, device);
  copy_raw(source, out);
  return out;
}

}  // namespace

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  Tensor out = copy_to(*this, dtype(), device());
  record("CloneBackward", {*this}, {out},
         [](const std::vector<Tensor>& grads) { return std::vector<Tensor>{grads[0]}; });
  return out;
}

Tensor Tensor::to(DType target) const {
  if (target == dtype()) return *this;
  Tensor out = copy_to(*this, target, device());
  DType source_dtype = dtype();
  if (is_floating(source_dtype)) {
    record("CastBackward", {*this}, {out}, [source_dtype](const std::vector<Tensor>& grads) {
      return std::vector<Tensor>{grads[0].to(source_dtype)};
    });
  }
  return out;
}

Tensor Tensor::to(Device target) const {
  if (target == device()) return *this;
  Tensor out = copy_to(*this, dtype(), target);
  Device source_device = device();
  record("ToDeviceBackward", {*this}, {out}, [source_device](const std::vector<Tensor>& grads) {
    return std::vector<Tensor>{grads[0].to(source_device)};
  });
  return out;
}

Tensor Tensor::detach() const {
  return from_storage(storage(), shape(), strides(), offset(), dtype());
}

// ---- element access ----

namespace detail {

void copy_from_host(Tensor& destination, const void* source, DType source_dtype) {
  Tensor staging = Tensor::empty(destination.shape(), source_dtype);
  std::memcpy(staging.data_ptr(), source, staging.nbytes());
  copy_raw(staging, destination);
  destination.bump_version();
}

std::vector<double> to_double_vector(const Tensor& tensor) {
  Tensor host = copy_to(tensor, DType::kF64, Device::CPU());
  const double* data = host.data<double>();
  return std::vector<double>(data, data + host.numel());
}

}  // namespace detail

double Tensor::item() const {
  SY_CHECK(numel() == 1, "item() of a tensor of shape ", ShapeString(shape()), " (one element expected)");
  return detail::to_double_vector(*this)[0];
}

// ---- in place ----

namespace {
void check_in_place(const Tensor& tensor, const char* op) {
  // Autograd does not record in-place ops: changing a leaf that requires grad (or a view of
  // one) or an intermediate of a graph would silently give wrong gradients.
  if (GradMode::enabled() && tensor.requires_grad()) {
    throw Error(absl::StrCat(op, ": a tensor of shape ", ShapeString(tensor.shape()),
                             " that requires grad (", tensor.is_leaf() ? "a leaf" : "part of a graph",
                             ") is used in an in-place operation; wrap the update in NoGradGuard "
                             "or use the out-of-place op"));
  }
}
}  // namespace

Tensor& Tensor::fill_(double value) {
  check_in_place(*this, "fill_");
  if (device().is_cpu()) {
    kernels::cpu::fill(*this, value);
  } else {
    SY_CUDA_KERNEL("fill_", kernels::cuda::fill(*this, value));
  }
  bump_version();
  return *this;
}

Tensor& Tensor::copy_(const Tensor& source) {
  check_in_place(*this, "copy_");
  Tensor broadcast = detail::broadcast_to(source, shape());
  copy_raw(broadcast, *this);
  bump_version();
  return *this;
}

Tensor& Tensor::add_(const Tensor& other, double alpha) {
  check_in_place(*this, "add_");
  NoGradGuard no_grad;
  Tensor sum = alpha == 1.0 ? add(*this, other) : add(*this, mul(other, scalar_like(other, alpha)));
  return copy_(sum);
}

Tensor& Tensor::mul_(double factor) {
  check_in_place(*this, "mul_");
  NoGradGuard no_grad;
  return copy_(mul(*this, scalar_like(*this, factor)));
}

// ---- autograd ----

bool Tensor::requires_grad() const {
  const AutogradMeta& meta = impl().autograd;
  return meta.requires_grad || meta.grad_fn != nullptr;
}

Tensor& Tensor::set_requires_grad(bool requires_grad) {
  SY_CHECK(is_leaf(), "set_requires_grad on a non-leaf tensor (it has grad_fn ",
           grad_fn()->name(), ")");
  SY_CHECK(!requires_grad || is_floating(dtype()), "only floating-point tensors can require grad, got ",
           dtype_name(dtype()));
  impl().autograd.requires_grad = requires_grad;
  return *this;
}

Tensor Tensor::grad() const {
  const auto& grad = impl().autograd.grad;
  return grad ? *grad : Tensor();
}

void Tensor::set_grad(const Tensor& grad) {
  if (!grad.defined()) {
    impl().autograd.grad.reset();
    return;
  }
  SY_CHECK(grad.shape() == shape(), "set_grad: gradient of shape ", ShapeString(grad.shape()),
           " for a tensor of shape ", ShapeString(shape()));
  impl().autograd.grad = std::make_shared<Tensor>(grad);
}

void Tensor::backward(const Tensor& gradient, bool retain_graph) const {
  run_backward({*this}, {gradient}, retain_graph);
}

void Tensor::register_post_accumulate_grad_hook(PostAccumulateGradHook hook) {
  SY_CHECK(is_leaf() && requires_grad(), "post-accumulate hooks go on leaves that require grad");
  impl().autograd.post_accumulate_grad_hooks.push_back(std::move(hook));
}

// ---- printing ----

std::string Tensor::to_string() const {
  if (!defined()) return "Tensor(undefined)";
  std::ostringstream out;
  out << "Tensor(shape=" << ShapeString(shape()) << ", dtype=" << dtype_name(dtype())
      << ", device=" << device().to_string();
  if (requires_grad()) out << ", requires_grad";
  out << ", values=[";
  std::vector<double> values = detail::to_double_vector(*this);
  constexpr size_t kShown = 8;
  for (size_t i = 0; i < values.size() && i < kShown; ++i) out << (i ? ", " : "") << values[i];
  if (values.size() > kShown) out << ", ...";
  out << "])";
  return out.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& tensor) { return os << tensor.to_string(); }

Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator-(const Tensor& a) { return neg(a); }
Tensor operator+(const Tensor& a, double b) { return add(a, scalar_like(a, b)); }
Tensor operator-(const Tensor& a, double b) { return sub(a, scalar_like(a, b)); }
Tensor operator*(const Tensor& a, double b) { return mul(a, scalar_like(a, b)); }
Tensor operator/(const Tensor& a, double b) { return div(a, scalar_like(a, b)); }
Tensor operator*(double a, const Tensor& b) { return mul(scalar_like(b, a), b); }
Tensor operator+(double a, const Tensor& b) { return add(scalar_like(b, a), b); }
Tensor operator-(double a, const Tensor& b) { return sub(scalar_like(b, a), b); }

}  // namespace sy
