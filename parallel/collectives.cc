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

Tensor exchanged(const Tensor& x, const std::vector<int64_t>& send_rows,
                 const std::vector<int64_t>& recv_rows, Communicator& group) {
  Tensor input = x.detach().contiguous();
  int64_t rows = std::accumulate(recv_rows.begin(), recv_rows.end(), int64_t{0});
  Tensor out = Tensor::empty(with_rows(input, rows), x.dtype(), x.device());
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

}  // namespace sy
