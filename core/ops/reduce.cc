// Reductions: the reduced dims are moved last and made contiguous, then reduced as rows.
#include "core/ops/reduce.h"

#include <algorithm>

#include "core/autograd/node.h"
#include "core/kernels/cpu/cpu_kernels.h"
#include "core/ops/dispatch.h"
#include "core/ops/elementwise.h"
#include "core/ops/view.h"

namespace sy {

using kernels::cpu::ReduceOp;

namespace {

struct ReducePlan {
  std::vector<int64_t> dims;  // sorted, unique, wrapped
  Shape kept_shape;           // output shape with keepdim
  Shape out_shape;            // output shape as requested
  int64_t row_length = 1;
};

ReducePlan plan_reduce(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  ReducePlan plan;
  for (int64_t d : dims) plan.dims.push_back(x.wrap_dim(d));
  if (x.dim() == 0) plan.dims.clear();
  std::sort(plan.dims.begin(), plan.dims.end());
  plan.dims.erase(std::unique(plan.dims.begin(), plan.dims.end()), plan.dims.end());
  plan.kept_shape = x.shape();
  for (int64_t d : plan.dims) {
    plan.row_length *= x.size(d);
    plan.kept_shape[d] = 1;
  }
  for (int64_t d = 0; d < x.dim(); ++d) {
    bool reduced = std::binary_search(plan.dims.begin(), plan.dims.end(), d);
    if (!reduced || keepdim) plan.out_shape.push_back(reduced ? 1 : x.size(d));
  }
  return plan;
}

// x with the reduced dims moved last, contiguous, no autograd.
Tensor rows_of(const Tensor& x, const ReducePlan& plan) {
  std::vector<int64_t> order;
  for (int64_t d = 0; d < x.dim(); ++d) {
    if (!std::binary_search(plan.dims.begin(), plan.dims.end(), d)) order.push_back(d);
  }
  order.insert(order.end(), plan.dims.begin(), plan.dims.end());
  Shape shape, strides;
  for (int64_t d : order) {
    shape.push_back(x.size(d));
    strides.push_back(x.stride(d));
  }
  Tensor permuted = detail::as_strided(x, shape, strides, x.offset());
  return permuted.is_contiguous() ? permuted : permuted.detach().contiguous();
}

Tensor reduce(ReduceOp op, const Tensor& x, const ReducePlan& plan) {
  Tensor rows = rows_of(x.detach(), plan);
  Tensor out = Tensor::empty(plan.out_shape, x.dtype(), x.device());
  if (x.device().is_cuda()) {
    SY_CUDA_KERNEL("reduction", kernels::cuda::reduce_rows(op, rows, plan.row_length, out));
  } else {
    kernels::cpu::reduce_rows(op, rows, plan.row_length, out);
  }
  return out;
}

std::vector<int64_t> all_dims(const Tensor& x) {
  std::vector<int64_t> dims(x.dim());
  for (int64_t d = 0; d < x.dim(); ++d) dims[d] = d;
  return dims;
}

}  // namespace

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  ReducePlan plan = plan_reduce(x, dims, keepdim);
  Tensor out = reduce(ReduceOp::kSum, x, plan);
  record("SumBackward", {x}, {out},
         [kept = plan.kept_shape, input_shape = x.shape()](const std::vector<Tensor>& g) {
           return std::vector<Tensor>{g[0].reshape(kept).expand(input_shape)};
         });
  return out;
}

Tensor sum(const Tensor& x) { return sum(x, all_dims(x), false); }

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  ReducePlan plan = plan_reduce(x, dims, keepdim);
  SY_CHECK(plan.row_length > 0, "mean of an empty selection of ", ShapeString(x.shape()));
  return sum(x, dims, keepdim) / static_cast<double>(plan.row_length);
}

Tensor mean(const Tensor& x) { return mean(x, all_dims(x), false); }

Tensor var(const Tensor& x, const std::vector<int64_t>& dims, int64_t correction, bool keepdim) {
  ReducePlan plan = plan_reduce(x, dims, keepdim);
  SY_CHECK(plan.row_length - correction > 0, "var: ", plan.row_length, " elements with correction ",
           correction);
  Tensor centered = x - mean(x, dims, /*keepdim=*/true);
  return sum(centered * centered, dims, keepdim) / static_cast<double>(plan.row_length - correction);
}

namespace {

// Max or min along one dim; the gradient flows to the first extremal element.
Tensor extremum(ReduceOp op, const Tensor& x, int64_t dim, bool keepdim) {
  ReducePlan plan = plan_reduce(x, {dim}, keepdim);
  Tensor out = reduce(op, x, plan);
  record(op == ReduceOp::kMax ? "MaxBackward" : "MinBackward", {x}, {out},
         [saved_x = SavedTensor(x), saved_out = SavedTensor(out), kept = plan.kept_shape,
          d = plan.dims.empty() ? 0 : plan.dims[0]](const std::vector<Tensor>& g) {
           // The first-hit mask is found on the host (a CUDA x is copied there).
           const Device cpu_device = Device::CPU();
           Tensor x = saved_x.get().to(cpu_device);
           Tensor hits = eq(x, saved_out.get().to(cpu_device).reshape(kept)).to(DType::kI64);
           // First hit only: a hit whose running count along d is 1.
           Tensor running = hits;
           if (x.dim() > 0) {
             Tensor counts = Tensor::empty(hits.shape(), DType::kI64);
             Tensor moved = hits.transpose(d, -1).contiguous();
             Tensor moved_counts = Tensor::empty(moved.shape(), DType::kI64);
             const int64_t* h = moved.data<int64_t>();
             int64_t* c = moved_counts.data<int64_t>();
             int64_t length = moved.dim() ? moved.size(-1) : 1;
             for (int64_t r = 0; r < moved.numel() / std::max<int64_t>(length, 1); ++r) {
               int64_t total = 0;
               for (int64_t i = 0; i < length; ++i) {
                 total += h[r * length + i];
                 c[r * length + i] = h[r * length + i] && total == 1;
               }
             }
             running = moved_counts.transpose(d, -1);
           }
           Tensor first = running.to(g[0].dtype()).to(g[0].device());
           return std::vector<Tensor>{first * g[0].reshape(kept)};
         });
  return out;
}

}  // namespace

Tensor max(const Tensor& x, int64_t dim, bool keepdim) { return extremum(ReduceOp::kMax, x, dim, keepdim); }
Tensor min(const Tensor& x, int64_t dim, bool keepdim) { return extremum(ReduceOp::kMin, x, dim, keepdim); }
Tensor max(const Tensor& x) { return max(x.reshape({-1}), 0, false); }

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  require_cpu("argmax", x);
  ReducePlan plan = plan_reduce(x, {dim}, keepdim);
  Tensor rows = rows_of(x.detach(), plan);
  Tensor out = Tensor::empty(plan.out_shape, DType::kI64);
  kernels::cpu::argmax_rows(rows, plan.row_length, out);
  return out;
}

}  // namespace sy
