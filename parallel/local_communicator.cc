// The single-rank backend: collectives over one rank reduce to copies.
#include "parallel/local_communicator.h"

#include "core/check.h"

namespace sy {

std::shared_ptr<Communicator> LocalCommunicator::split(int color, int /*key*/) const {
  SY_CHECK(color >= 0, "split: color must be >= 0, got ", color);
  auto group = std::make_shared<LocalCommunicator>();
  group->set_timeout_seconds(timeout_seconds());
  return group;
}

Work LocalCommunicator::all_reduce_async(const Tensor& tensor, ReduceOp op) {
  detail::check_contiguous("all_reduce", tensor);
  SY_CHECK(op != ReduceOp::kAvg || is_floating(tensor.dtype()),
           "all_reduce avg needs a floating dtype, got ", dtype_name(tensor.dtype()));
  return Work();
}

Work LocalCommunicator::all_gather_async(const Tensor& input, const Tensor& output) {
  detail::check_all_gather(input, output, 1);
  Tensor(output).copy_(input);
  return Work();
}

Work LocalCommunicator::reduce_scatter_async(const Tensor& input, const Tensor& output,
                                             ReduceOp op) {
  detail::check_reduce_scatter(input, output, 1);
  SY_CHECK(op != ReduceOp::kAvg || is_floating(input.dtype()),
           "reduce_scatter avg needs a floating dtype, got ", dtype_name(input.dtype()));
  Tensor(output).copy_(input);
  return Work();
}

Work LocalCommunicator::all_to_all_v_async(const Tensor& input,
                                           const std::vector<int64_t>& send_rows,
                                           const Tensor& output,
                                           const std::vector<int64_t>& recv_rows) {
  detail::check_all_to_all_v(input, send_rows, output, recv_rows, 1);
  SY_CHECK(send_rows[0] == recv_rows[0], "all_to_all_v: one rank sends ", send_rows[0],
           " rows to itself but expects ", recv_rows[0]);
  if (input.numel() > 0) Tensor(output).copy_(input);
  return Work();
}

Work LocalCommunicator::broadcast_async(const Tensor& tensor, int root) {
  detail::check_contiguous("broadcast", tensor);
  SY_CHECK(root == 0, "broadcast: root ", root, " outside a group of 1");
  return Work();
}

Work LocalCommunicator::send_async(const Tensor& tensor, int peer, int tag) {
  SY_CHECK(peer == 0, "send: peer ", peer, " outside a group of 1");
  sent_to_self_[tag].push_back(tensor.detach().clone());
  return Work();
}

Work LocalCommunicator::recv_async(const Tensor& tensor, int peer, int tag) {
  SY_CHECK(peer == 0, "recv: peer ", peer, " outside a group of 1");
  auto& queue = sent_to_self_[tag];
  SY_CHECK(!queue.empty(), "recv from self with tag ", tag,
           " before a matching send (a group of 1 would wait forever)");
  Tensor message = queue.front();
  queue.pop_front();
  SY_CHECK(message.shape() == tensor.shape(), "recv: expected ", ShapeString(tensor.shape()),
           ", the matching send has ", ShapeString(message.shape()));
  Tensor(tensor).copy_(message);
  return Work();
}

}  // namespace sy
