// The autograd graph: a Node is the backward of one op call. It holds what backward needs
// (captured by its function, saved tensors checked against their version), one edge per
// input leading to the node that produced it, and the metadata of each output.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace sy {

struct Edge {
  std::shared_ptr<Node> node;  // null: the input needs no gradient
  uint32_t input_nr = 0;       // which of node's outputs the input was
  bool valid() const { return node != nullptr; }
};

// Shape, dtype and device of an output, so that a missing output gradient becomes zeros.
struct OutputMeta {
  Shape shape;
  DType dtype;
  Device device;
};

class Node : public std::enable_shared_from_this<Node> {
 public:
  // grads[i] is the gradient of output i (zeros where nothing flowed); returns one gradient
  // per input (undefined where the input needs none).
  using BackwardFunction = std::function<std::vector<Tensor>(const std::vector<Tensor>& grads)>;

  Node(std::string name, BackwardFunction function, std::vector<Edge> next_edges,
       std::vector<OutputMeta> outputs);
  virtual ~Node() = default;

  const std::string& name() const { return name_; }
  const std::vector<Edge>& next_edges() const { return next_edges_; }
  const std::vector<OutputMeta>& outputs() const { return outputs_; }
  uint64_t sequence_nr() const { return sequence_nr_; }

  virtual std::vector<Tensor> apply(const std::vector<Tensor>& grads);
  // Frees what backward needed; a second apply() then fails with a clear error.
  virtual void release();

 protected:
  std::string name_;
  BackwardFunction function_;
  std::vector<Edge> next_edges_;
  std::vector<OutputMeta> outputs_;
  uint64_t sequence_nr_;
  bool released_ = false;
};

// A tensor saved for backward, with the version it had. get() fails if the tensor was
// modified in place since (its values would no longer be the ones the forward used).
// get() returns a detached handle. Save tensors through it rather than capturing a Tensor
// in a backward closure: a captured output would keep its own graph alive.
class SavedTensor {
 public:
  SavedTensor() = default;
  explicit SavedTensor(const Tensor& tensor);
  Tensor get() const;

 private:
  Tensor tensor_;
  uint64_t version_ = 0;
};

// True when grad mode is on and any defined input requires grad.
bool any_requires_grad(const std::vector<Tensor>& inputs);

// The edge through which a gradient for `tensor` flows (its grad_fn, or the accumulator
// of a leaf that requires grad).
Edge gradient_edge(const Tensor& tensor);

// Records the backward of an op: when grad mode is on and some input requires grad, makes a
// Node over the inputs and sets it as grad_fn of each floating-point output.
void record(const std::string& name, const std::vector<Tensor>& inputs,
            const std::vector<Tensor>& outputs, Node::BackwardFunction backward);
// As record(), but whenever grad mode is on, even if no input requires grad: for nodes
// whose backward reaches leaves that are not among `inputs` (activation recomputation).
void record_unconditionally(const std::string& name, const std::vector<Tensor>& inputs,
                            const std::vector<Tensor>& outputs, Node::BackwardFunction backward);

// Sums `grad` over broadcast dimensions down to `shape` (the adjoint of expand).
Tensor sum_to(const Tensor& grad, const Shape& shape);

}  // namespace sy
