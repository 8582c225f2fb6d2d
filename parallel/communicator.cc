// Argument checks shared by every Communicator backend.
#include "parallel/communicator.h"

#include <numeric>

#include "core/check.h"

namespace sy {

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return "sum";
    case ReduceOp::kAvg: return "avg";
    case ReduceOp::kMax: return "max";
  }
  return "?";
}

namespace detail {

int64_t row_bytes(const Tensor& tensor) {
  SY_CHECK(tensor.dim() >= 1, "a collective over rows needs at least one dimension, got shape ",
           ShapeString(tensor.shape()));
  int64_t row_elements = 1;
  for (int64_t d = 1; d < tensor.dim(); ++d) row_elements *= tensor.size(d);
  return row_elements * static_cast<int64_t>(element_size(tensor.dtype()));
}

void check_contiguous(const char* what, const Tensor& tensor) {
  SY_CHECK(tensor.defined(), what, ": undefined tensor");
  SY_CHECK(tensor.is_contiguous(), what, ": the tensor must be contiguous, shape ",
           ShapeString(tensor.shape()), " strides ", ShapeString(tensor.strides()));
}

namespace {
Shape tail(const Tensor& t) { return Shape(t.shape().begin() + 1, t.shape().end()); }
}  // namespace

void check_all_gather(const Tensor& input, const Tensor& output, int size) {
  check_contiguous("all_gather input", input);
  check_contiguous("all_gather output", output);
  SY_CHECK(input.dtype() == output.dtype(), "all_gather: dtypes differ");
  SY_CHECK(output.dim() == input.dim() && output.size(0) == input.size(0) * size &&
               tail(input) == tail(output),
           "all_gather: input ", ShapeString(input.shape()), " over ", size,
           " ranks needs output (", size, " * R, ...), got ", ShapeString(output.shape()));
}

void check_reduce_scatter(const Tensor& input, const Tensor& output, int size) {
  check_contiguous("reduce_scatter input", input);
  check_contiguous("reduce_scatter output", output);
  SY_CHECK(input.dtype() == output.dtype(), "reduce_scatter: dtypes differ");
  SY_CHECK(output.dim() == input.dim() && input.size(0) == output.size(0) * size &&
               tail(input) == tail(output),
           "reduce_scatter: output ", ShapeString(output.shape()), " over ", size,
           " ranks needs input (", size, " * R, ...), got ", ShapeString(input.shape()));
}

void check_all_to_all_v(const Tensor& input, const std::vector<int64_t>& send_rows,
                        const Tensor& output, const std::vector<int64_t>& recv_rows, int size) {
  check_contiguous("all_to_all_v input", input);
  check_contiguous("all_to_all_v output", output);
  SY_CHECK(input.dtype() == output.dtype(), "all_to_all_v: dtypes differ");
  SY_CHECK(static_cast<int>(send_rows.size()) == size && static_cast<int>(recv_rows.size()) == size,
           "all_to_all_v: need one send and one receive count per rank (", size, "), got ",
           send_rows.size(), " and ", recv_rows.size());
  for (int p = 0; p < size; ++p) {
    SY_CHECK(send_rows[p] >= 0 && recv_rows[p] >= 0, "all_to_all_v: negative count for rank ", p);
  }
  int64_t sent = std::accumulate(send_rows.begin(), send_rows.end(), int64_t{0});
  int64_t received = std::accumulate(recv_rows.begin(), recv_rows.end(), int64_t{0});
  SY_CHECK(input.dim() >= 1 && input.size(0) == sent, "all_to_all_v: send counts sum to ", sent,
           " rows but input is ", ShapeString(input.shape()));
  SY_CHECK(output.dim() == input.dim() && output.size(0) == received && tail(input) == tail(output),
           "all_to_all_v: receive counts sum to ", received, " rows of ",
           ShapeString(tail(input)), " but output is ", ShapeString(output.shape()));
}

}  // namespace detail
}  // namespace sy
