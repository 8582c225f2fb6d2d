#include "core/autograd/node.h"

#include <atomic>

#include "core/autograd/grad_mode.h"
#include "core/ops/reduce.h"

namespace sy {
namespace {

std::atomic<uint64_t> next_sequence_nr{0};

// The node a leaf's gradients flow into: adds them to .grad() and runs the leaf's hooks.
class AccumulateGrad final : public Node {
 public:
  explicit AccumulateGrad(const Tensor& leaf)
      : Node("AccumulateGrad", nullptr, {}, {{leaf.shape(), leaf.dtype(), leaf.device()}}),
        leaf_(leaf.impl_ptr()) {}

  std::vector<Tensor> apply(const std::vector<Tensor>& grads) override {
    std::shared_ptr<TensorImpl> impl = leaf_.lock();
    if (!impl) return {};
    Tensor leaf(impl);
    const Tensor& grad = grads[0];
    SY_CHECK(grad.shape() == leaf.shape(), "gradient of shape ", ShapeString(grad.shape()),
             " for a leaf of shape ", ShapeString(leaf.shape()));
    NoGradGuard no_grad;
    Tensor current = leaf.grad();
    if (!current.defined()) {
      // A fresh copy: the incoming gradient may be shared with another leaf's.
      leaf.set_grad(grad.to(leaf.dtype()).clone());
    } else {
      current.add_(grad);
    }
    for (auto& hook : impl->autograd.post_accumulate_grad_hooks) hook(leaf);
    return {};
  }
  void release() override {}

 private:
  std::weak_ptr<TensorImpl> leaf_;
};

}  // namespace

Node::Node(std::string name, BackwardFunction function, std::vector<Edge> next_edges,
           std::vector<OutputMeta> outputs)
    : name_(std::move(name)),
      function_(std::move(function)),
      next_edges_(std::move(next_edges)),
      outputs_(std::move(outputs)),
      sequence_nr_(next_sequence_nr.fetch_add(1)) {}

std::vector<Tensor> Node::apply(const std::vector<Tensor>& grads) {
  if (released_) {
    throw Error(absl::StrCat(
        "autograd: trying to backward through ", name_,
        " a second time; its saved tensors were freed by the first backward. Pass "
        "retain_graph=true to the first backward to keep them."));
  }
  std::vector<Tensor> input_grads = function_(grads);
  SY_CHECK(input_grads.size() == next_edges_.size(), name_, " returned ", input_grads.size(),
           " gradients for ", next_edges_.size(), " inputs");
  return input_grads;
}

void Node::release() {
  released_ = true;
  function_ = nullptr;
}

// Kept detached: an op that saves its own output would otherwise form a cycle (output ->
// grad_fn -> saved output) that keeps a graph alive after its last handle is dropped.
// Backward runs without grad, so the saved handle needs no history; it shares the storage,
// and with it the version counter.
SavedTensor::SavedTensor(const Tensor& tensor)
    : tensor_(tensor.defined() ? tensor.detach() : Tensor()),
      version_(tensor.defined() ? tensor.version() : 0) {}

Tensor SavedTensor::get() const {
  if (tensor_.defined() && tensor_.version() != version_) {
    throw Error(absl::StrCat("autograd: a tensor of shape ", ShapeString(tensor_.shape()),
                             " saved for backward was modified in place (version ", version_,
                             " when saved, ", tensor_.version(), " now)"));
  }
  return tensor_;
}

bool any_requires_grad(const std::vector<Tensor>& inputs) {
  if (!GradMode::enabled()) return false;
  for (const Tensor& input : inputs) {
    if (input.defined() && input.requires_grad()) return true;
  }
  return false;
}

Edge gradient_edge(const Tensor& tensor) {
  if (!tensor.defined()) return {};
  AutogradMeta& meta = tensor.impl().autograd;
  if (meta.grad_fn) return {meta.grad_fn, meta.output_nr};
  if (!meta.requires_grad) return {};
  std::shared_ptr<Node> accumulator = meta.grad_accumulator.lock();
  if (!accumulator) {
    accumulator = std::make_shared<AccumulateGrad>(tensor);
    meta.grad_accumulator = accumulator;
  }
  return {accumulator, 0};
}

void record(const std::string& name, const std::vector<Tensor>& inputs,
            const std::vector<Tensor>& outputs, Node::BackwardFunction backward) {
  if (!any_requires_grad(inputs)) return;
  record_unconditionally(name, inputs, outputs, std::move(backward));
}

void record_unconditionally(const std::string& name, const std::vector<Tensor>& inputs,
                            const std::vector<Tensor>& outputs, Node::BackwardFunction backward) {
  if (!GradMode::enabled()) return;
  std::vector<Edge> edges;
  edges.reserve(inputs.size());
  for (const Tensor& input : inputs) edges.push_back(gradient_edge(input));
  std::vector<OutputMeta> metas;
  metas.reserve(outputs.size());
  for (const Tensor& output : outputs) {
    metas.push_back({output.shape(), output.dtype(), output.device()});
  }
  auto node = std::make_shared<Node>(name, std::move(backward), std::move(edges), std::move(metas));
  for (size_t i = 0; i < outputs.size(); ++i) {
    if (!is_floating(outputs[i].dtype())) continue;  // indices and masks carry no gradient
    AutogradMeta& meta = outputs[i].impl().autograd;
    meta.grad_fn = node;
    meta.output_nr = static_cast<uint32_t>(i);
    meta.requires_grad = true;
  }
}

Tensor sum_to(const Tensor& grad, const Shape& shape) {
  if (grad.shape() == shape) return grad;
  int64_t leading = grad.dim() - static_cast<int64_t>(shape.size());
  SY_CHECK(leading >= 0, "sum_to: cannot reduce ", ShapeString(grad.shape()), " to ",
           ShapeString(shape));
  std::vector<int64_t> dims;
  for (int64_t d = 0; d < leading; ++d) dims.push_back(d);
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1 && grad.size(leading + d) != 1) dims.push_back(leading + d);
  }
  Tensor reduced = dims.empty() ? grad : sum(grad, dims, /*keepdim=*/true);
  return reduced.reshape(shape);
}

}  // namespace sy
