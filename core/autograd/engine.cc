#include "core/autograd/engine.h"

#include <queue>
#include <unordered_map>

#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/ops/elementwise.h"

namespace sy {
namespace {

struct PendingGrads {
  std::vector<Tensor> grads;  // one per output of the node
  int dependencies = 0;       // edges into the node not yet delivered
};

// Later nodes first, so that among ready nodes the most recent op runs first.
struct LaterFirst {
  bool operator()(const Node* a, const Node* b) const { return a->sequence_nr() < b->sequence_nr(); }
};

}  // namespace

void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
                  bool retain_graph) {
  SY_CHECK(roots.size() == grads.size(), "run_backward: ", roots.size(), " roots but ",
           grads.size(), " gradients");
  NoGradGuard no_grad;  // backward functions compute plain values
  std::unordered_map<Node*, PendingGrads> pending;
  std::unordered_map<Node*, std::shared_ptr<Node>> keep_alive;

  // Count, for each reachable node, how many edges lead into it.
  std::vector<Node*> stack;
  auto visit = [&](const std::shared_ptr<Node>& node) {
    if (keep_alive.emplace(node.get(), node).second) {
      pending[node.get()].grads.resize(node->outputs().size());
      stack.push_back(node.get());
    }
  };
  std::vector<Edge> root_edges;
  for (const Tensor& root : roots) {
    Edge edge = gradient_edge(root);
    SY_CHECK(edge.valid(), "backward: a root tensor of shape ", ShapeString(root.shape()),
             " does not require grad and has no grad_fn");
    root_edges.push_back(edge);
    visit(edge.node);
  }
  while (!stack.empty()) {
    Node* node = stack.back();
    stack.pop_back();
    for (const Edge& edge : node->next_edges()) {
      if (!edge.valid()) continue;
      visit(edge.node);
      pending[edge.node.get()].dependencies += 1;
    }
  }

  auto deliver = [&](const Edge& edge, const Tensor& grad) {
    Tensor& slot = pending[edge.node.get()].grads[edge.input_nr];
    slot = slot.defined() ? add(slot, grad) : grad;
  };
  for (size_t i = 0; i < roots.size(); ++i) {
    Tensor grad = grads[i];
    if (!grad.defined()) {
      SY_CHECK(roots[i].numel() == 1, "backward: a gradient must be given for a non-scalar root of shape ",
               ShapeString(roots[i].shape()));
      grad = Tensor::ones(roots[i].shape(), roots[i].dtype(), roots[i].device());
    }
    SY_CHECK(grad.shape() == roots[i].shape(), "backward: gradient of shape ",
             ShapeString(grad.shape()), " for a root of shape ", ShapeString(roots[i].shape()));
    deliver(root_edges[i], grad);
  }

  std::priority_queue<Node*, std::vector<Node*>, LaterFirst> ready;
  for (auto& [node, state] : pending) {
    if (state.dependencies == 0) ready.push(node);
  }
  while (!ready.empty()) {
    Node* node = ready.top();
    ready.pop();
    PendingGrads state = std::move(pending[node]);
    for (size_t i = 0; i < state.grads.size(); ++i) {
      if (!state.grads[i].defined()) {
        const OutputMeta& meta = node->outputs()[i];
        state.grads[i] = Tensor::zeros(meta.shape, is_floating(meta.dtype) ? meta.dtype : DType::kF32,
                                       meta.device);
      }
    }
    std::vector<Tensor> input_grads = node->apply(state.grads);
    if (!retain_graph) node->release();
    const std::vector<Edge>& edges = node->next_edges();
    for (size_t i = 0; i < edges.size(); ++i) {
      if (!edges[i].valid()) continue;
      if (input_grads[i].defined()) {
        const OutputMeta& meta = edges[i].node->outputs()[edges[i].input_nr];
        SY_CHECK(input_grads[i].shape() == meta.shape, node->name(), " returned a gradient of shape ",
                 ShapeString(input_grads[i].shape()), " for input ", i, " of shape ",
                 ShapeString(meta.shape));
        deliver(edges[i], input_grads[i]);
      }
      if (--pending[edges[i].node.get()].dependencies == 0) ready.push(edges[i].node.get());
    }
  }
}

}  // namespace sy
