// Collectives as autograd ops; each backward runs the forward's adjoint collective.
#include "parallel/collectives.h"

#include <numeric>

#include "core/autograd/node.h"
#include "core/check.h"

namespace sy {
namespace {

// A contiguous copy that the communicator may overwrite, outside the graph.
Tensor owned_buffer(const Tensor& x) { return x.detach().contiguous().clone(); }

Shape with_rows(const Tensor& x, int64_t rows) {
  SY_CHECK(x.dim() >= 1, "a row collective needs at least one dimension, got ",
           ShapeString(x.shape()));
  Shape shape = x.shape();
  shape[0] = rows;
  return shape;
}

Tensor summed_over_group(const Tensor& x, Communicator& group) {
  Tensor out = owned_buffer(x);
  group.all_reduce(out, ReduceOp::kSum);
  return out;
}

Tensor gathered(const Tensor& x, Communicator& group) {
  Tensor input = x.detach().contiguous();
  Tensor out = Tensor::empty(with_rows(input, input.size(0) * group.size()), x.dtype(), x.device());
  group.all_gather(input, out);
  return out;
}

Tensor scattered(const Tensor& x, Communicator& group) {
  Tensor input = x.detach().contiguous();
  SY_CHECK(input.dim() >= 1 && input.size(0) % group.size() == 0, "reduce_scatter: ",
           ShapeString(input.shape()), " has rows not divisible by the group size ", group.size());
  Tensor out = Tensor::empty(with_rows(input, input.size(0) / group.size()), x.dtype(), x.device());
  group.reduce_scatter(input, out, ReduceOp::kSum);
  return out;
}

Tensor rows_for(const Tensor& x, const std::vector<int64_t>& rows) {
  return Tensor::empty(with_rows(x, std::accumulate(rows.begin(), rows.end(), int64_t{0})), x.dtype(), x.device());
}

Tensor exchanged(const Tensor& x, const std::vector<int64_t>& send_rows,
                 const std::vector<int64_t>& recv_rows, Communicator& group) {
  Tensor input = x.detach().contiguous();
  Tensor out = rows_for(input, recv_rows);
  group.all_to_all_v(input, send_rows, out, recv_rows);
  return out;
}

}  // namespace

Tensor copy_to_group(const Tensor& x, const std::shared_ptr<Communicator>& group) {
  Tensor out = x.detach().clone();
  record("CopyToGroupBackward", {x}, {out}, [group](const std::vector<Tensor>& grads) {
    return std::vector<Tensor>{summed_over_group(grads[0], *group)};
  });
  return out;
}

Tensor reduce_from_group(const Tensor& x, const std::shared_ptr<Communicator>& group) {
  Tensor out = summed_over_group(x, *group);
  record("ReduceFromGroupBackward", {x}, {out},
         [](const std::vector<Tensor>& grads) { return std::vector<Tensor>{grads[0]}; });
  return out;
}

Tensor all_reduce_sum(const Tensor& x, const std::shared_ptr<Communicator>& group) {
  Tensor out = summed_over_group(x, *group);
  record("AllReduceSumBackward", {x}, {out}, [group](const std::vector<Tensor>& grads) {
    return std::vector<Tensor>{summed_over_group(grads[0], *group)};
  });
  return out;
}

Tensor all_gather(const Tensor& x, const std::shared_ptr<Communicator>& group) {
  Tensor out = gathered(x, *group);
  record("AllGatherBackward", {x}, {out}, [group](const std::vector<Tensor>& grads) {
    return std::vector<Tensor>{scattered(grads[0], *group)};
  });
  return out;
}

Tensor reduce_scatter(const Tensor& x, const std::shared_ptr<Communicator>& group) {
  Tensor out = scattered(x, *group);
  record("ReduceScatterBackward", {x}, {out}, [group](const std::vector<Tensor>& grads) {
    return std::vector<Tensor>{gathered(grads[0], *group)};
  });
  return out;
}

Tensor all_to_all_v(const Tensor& x, const std::vector<int64_t>& send_rows,
                    const std::vector<int64_t>& recv_rows,
                    const std::shared_ptr<Communicator>& group) {
  Tensor out = exchanged(x, send_rows, recv_rows, *group);
  record("AllToAllVBackward", {x}, {out},
         [send_rows, recv_rows, group](const std::vector<Tensor>& grads) {
           return std::vector<Tensor>{exchanged(grads[0], recv_rows, send_rows, *group)};
         });
  return out;
}

// One exchange in flight: its counts and group, the forward Work, and in backward the
// reverse exchange (started by the wait node, waited by the start node).
struct AllToAllInFlight {
  std::vector<int64_t> send_rows, recv_rows;
  std::shared_ptr<Communicator> group;
  Work forward;
  Work backward;
  Tensor backward_output;  // (sum(send_rows), ...): the gradient of x, filled by `backward`
};

StartedAllToAll all_to_all_v_start(const Tensor& x, const std::vector<int64_t>& send_rows,
                                   const std::vector<int64_t>& recv_rows,
                                   const std::shared_ptr<Communicator>& group) {
  auto in_flight = std::make_shared<AllToAllInFlight>();
  in_flight->send_rows = send_rows;
  in_flight->recv_rows = recv_rows;
  in_flight->group = group;
  Tensor input = x.detach().contiguous();
  Tensor out = rows_for(input, recv_rows);
  in_flight->forward = group->all_to_all_v_async(input, send_rows, out, recv_rows);
  record("AllToAllVStartBackward", {x}, {out}, [in_flight](const std::vector<Tensor>&) {
    SY_CHECK(in_flight->backward_output.defined(), "all_to_all_v_start: backward before the wait's backward");
    in_flight->backward.wait();
    return std::vector<Tensor>{std::move(in_flight->backward_output)};
  });
  return {out, in_flight};
}

Tensor all_to_all_v_wait(const StartedAllToAll& started) {
  SY_CHECK(started.in_flight != nullptr, "all_to_all_v_wait: not started by all_to_all_v_start");
  started.in_flight->forward.wait();
  Tensor out = started.output.detach();
  record("AllToAllVWaitBackward", {started.output}, {out},
         [in_flight = started.in_flight](const std::vector<Tensor>& grads) {
           // The gradient passes through unchanged; the start node's backward collects the
           // exchanged one (the Work keeps `grad` alive while it is being sent).
           Tensor grad = grads[0].contiguous();
           in_flight->backward_output = rows_for(grad, in_flight->send_rows);
           in_flight->backward = in_flight->group->all_to_all_v_async(grad, in_flight->recv_rows,
                                                                      in_flight->backward_output, in_flight->send_rows);
           return std::vector<Tensor>{grads[0]};
         });
  return out;
}

}  // namespace sy
