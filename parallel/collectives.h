// Collectives as autograd ops: each records its adjoint as backward (STYLE.md), so a
// gradient computed on every rank is the gradient of the sum of every rank's loss.
// Rows are dim 0; inputs need not be contiguous.
#pragma once

#include <memory>
#include <vector>

#include "core/tensor.h"
#include "parallel/communicator.h"

namespace sy {

// Megatron's pair for a region where every rank holds the same input and the same loss
// (tensor parallelism): the loss counts once, not once per rank.
// copy_to_group: forward identity, backward all-reduce (sum) of the ranks' gradients.
Tensor copy_to_group(const Tensor& x, const std::shared_ptr<Communicator>& group);
// reduce_from_group: forward all-reduce (sum), backward identity.
Tensor reduce_from_group(const Tensor& x, const std::shared_ptr<Communicator>& group);

// The sum over ranks, every rank getting it, where every rank's own loss counts: its adjoint
// is again a sum all-reduce.
Tensor all_reduce_sum(const Tensor& x, const std::shared_ptr<Communicator>& group);

// (R, ...) -> (size * R, ...); backward: reduce-scatter (sum).
Tensor all_gather(const Tensor& x, const std::shared_ptr<Communicator>& group);
// (size * R, ...) -> (R, ...), summed over ranks; backward: all-gather.
Tensor reduce_scatter(const Tensor& x, const std::shared_ptr<Communicator>& group);

// (sum(send_rows), ...) -> (sum(recv_rows), ...) as Communicator::all_to_all_v; backward:
// all-to-all-v of the gradient with the counts swapped.
Tensor all_to_all_v(const Tensor& x, const std::vector<int64_t>& send_rows,
                    const std::vector<int64_t>& recv_rows,
                    const std::shared_ptr<Communicator>& group);

// all_to_all_v split in two autograd ops so that computation runs while the rows travel:
//   StartedAllToAll started = all_to_all_v_start(x, send_rows, recv_rows, group);
//   ... other work ...
//   Tensor y = all_to_all_v_wait(started);
// started.output is being written until the wait: only all_to_all_v_wait may consume it.
// Backward keeps the overlap. The engine runs ready nodes latest first, so the wait node's
// backward runs first: it STARTS the reverse all-to-all-v of the gradient (counts swapped)
// and hands its still-filling buffer on; the start node's backward runs later (after the
// nodes recorded between the two, e.g. another chunk's experts) and WAITS for it. Every rank
// must record the same pairs in the same order, as for any collective.
struct AllToAllInFlight;
struct StartedAllToAll {
  Tensor output;  // (sum(recv_rows), ...): not to be read before all_to_all_v_wait
  std::shared_ptr<AllToAllInFlight> in_flight;
};
StartedAllToAll all_to_all_v_start(const Tensor& x, const std::vector<int64_t>& send_rows,
                                   const std::vector<int64_t>& recv_rows,
                                   const std::shared_ptr<Communicator>& group);
Tensor all_to_all_v_wait(const StartedAllToAll& started);

}  // namespace sy
