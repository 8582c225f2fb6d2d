// softmax / log_softmax: the dim is moved last and made contiguous, the row kernel runs, and
// the result is moved back. Backward works from the saved output.
#include "core/ops/softmax.h"

#include "core/autograd/node.h"
#include "core/kernels/cpu/nn_kernels.h"
#include "core/ops/dispatch.h"

namespace sy {
namespace {

// `tensor` (no autograd) with `dim` moved last, contiguous: rows of the softmax.
Tensor rows_along(const Tensor& tensor, int64_t dim) {
  Tensor moved = dim == tensor.dim() - 1 ? tensor.detach() : tensor.detach().transpose(dim, -1);
  return moved.contiguous();
}

// The inverse of rows_along: a contiguous tensor in the original dim order.
Tensor from_rows(const Tensor& rows, int64_t dim) {
  return dim == rows.dim() - 1 ? rows : rows.transpose(dim, -1).contiguous();
}

Tensor softmax_impl(const Tensor& input, int64_t dim, bool log) {
  const char* name = log ? "log_softmax" : "softmax";
  SY_CHECK(is_floating(input.dtype()), name, ": expected a floating-point tensor, got ",
           dtype_name(input.dtype()));
  // A 0-d tensor is one row of one element.
  const bool scalar = input.dim() == 0;
  const Tensor x = scalar ? input.detach().reshape({1}) : input;
  const int64_t d = x.wrap_dim(dim);
  Tensor rows = rows_along(x, d);
  Tensor out_rows = Tensor::empty(rows.shape(), rows.dtype(), rows.device());
  if (x.device().is_cpu()) {
    kernels::cpu::softmax_rows(rows, rows.size(-1), log, out_rows);
  } else {
    if (log) require_cpu(name, x);
    SY_CUDA_KERNEL(name, kernels::cuda::softmax_last_dim(rows, out_rows));
  }
  Tensor out = from_rows(out_rows, d);
  if (scalar) out = out.reshape({});
  record(log ? "LogSoftmaxBackward" : "SoftmaxBackward", {input}, {out},
         [saved_out = SavedTensor(out), d, log, name, shape = input.shape()](const std::vector<Tensor>& g) {
           Tensor y = saved_out.get();
           require_cpu(name, y);
           if (shape.empty()) y = y.reshape({1});
           Tensor y_rows = rows_along(y, d);
           Tensor g_rows = rows_along(g[0].reshape(y.shape()).to(y.dtype()), d);
           Tensor dx_rows = Tensor::empty(y_rows.shape(), y_rows.dtype());
           kernels::cpu::softmax_backward_rows(y_rows, g_rows, y_rows.size(-1), log, dx_rows);
           return std::vector<Tensor>{from_rows(dx_rows, d).reshape(shape)};
         });
  return out;
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, /*log=*/false); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, /*log=*/true); }

}  // namespace sy
