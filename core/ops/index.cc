// Indexing ops: argument checks, the CPU kernels of core/kernels/cpu/index_kernels.h (and the
// CUDA kernels for topk, gather, index_select and index_add, the MoE routing path), and their backward
// (gather <-> scatter_add, index_select <-> index_add, sort/topk scatter the values' gradient
// back through their indices, cumsum <-> reverse cumsum).
#include "core/ops/index.h"

#include <algorithm>

#include "core/autograd/node.h"
#include "core/kernels/cpu/index_kernels.h"
#include "core/ops/dispatch.h"
#include "core/ops/view.h"

namespace sy {
namespace {

namespace cpu = kernels::cpu;

bool is_integer(DType dtype) { return dtype == DType::kI32 || dtype == DType::kI64; }

// The index as contiguous i64 with every value in [0, size), checked on one core so that
// the kernels can trust it, on `device` (the indexed tensor's). A CUDA index is checked on a
// host copy: the MoE indices are small, and a bad one must fail here, not fault in a kernel.
Tensor checked_index(const char* op, const Tensor& index, int64_t dim, int64_t size,
                     Device device = Device::CPU()) {
  SY_CHECK(index.device() == device, op, ": index on ", index.device().to_string(), " for a tensor on ",
           device.to_string());
  SY_CHECK(is_integer(index.dtype()), op, ": index must be i32 or i64, got ", dtype_name(index.dtype()));
  Tensor index64 = index.detach().to(Device::CPU()).to(DType::kI64).contiguous();
  const int64_t* values = index64.data<int64_t>();
  for (int64_t i = 0; i < index64.numel(); ++i) {
    SY_CHECK(values[i] >= 0 && values[i] < size, op, ": index ", values[i],
             " is out of range for dimension ", dim, " of size ", size);
  }
  if (device.is_cpu()) return index64;
  return index.dtype() == DType::kI64 && index.is_contiguous() ? index.detach() : index64.to(device);
}

// A contiguous x seen as (outer, x.size(dim), inner): the row layout of the CUDA kernels.
Tensor rows_view(const Tensor& x, int64_t dim) {
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= x.size(d);
  for (int64_t d = dim + 1; d < x.dim(); ++d) inner *= x.size(d);
  return x.reshape({outer, x.dim() == 0 ? 1 : x.size(dim), inner});
}

// A 1-D index of length L seen with `shape` (shape[dim] == L): stride 0 on every other dim.
Tensor broadcast_along(const Tensor& index64, const Shape& shape, int64_t dim) {
  Shape strides(shape.size(), 0);
  strides[dim] = index64.dim() == 0 ? 0 : index64.stride(0);
  return detail::as_strided(index64, shape, strides, index64.offset());
}

// index64 on x's device.
Tensor gather_impl(const Tensor& x, int64_t dim, const Tensor& index64) {
  Tensor out = Tensor::empty(index64.shape(), x.dtype(), x.device());
  if (x.device().is_cuda()) {
    SY_CUDA_KERNEL("gather", kernels::cuda::gather(x.detach(), dim, index64, out));
  } else {
    cpu::gather(x.detach(), dim, index64, out);
  }
  return out;
}

// x + scatter of source (only its first index.shape elements along every dim) at index.
Tensor scatter_add_impl(const Tensor& x, int64_t dim, const Tensor& index64, const Tensor& source,
                        double alpha) {
  if (!x.device().is_cpu()) {
    // No CUDA scatter kernel: the host computes it. Reached from CUDA by gather's backward (the
    // router's (N, K) weights), scatter_add (the sequence balancing loss's (B, T*K) ones) and
    // topk's backward (never run by the router: it ranks detached scores); all small.
    const Device cpu_device = Device::CPU();
    return scatter_add_impl(x.detach().to(cpu_device), dim, index64.to(cpu_device), source.detach().to(cpu_device),
                            alpha)
        .to(x.device());
  }
  Tensor out = x.detach().clone();
  Tensor window = detail::as_strided(source, index64.shape(), source.strides(), source.offset());
  cpu::scatter_add(out, dim, index64, window, alpha);
  return out;
}

// Moves `dim` last and makes the result contiguous (no autograd).
Tensor dim_last(const Tensor& x, int64_t dim) {
  std::vector<int64_t> order;
  for (int64_t d = 0; d < x.dim(); ++d) {
    if (d != dim) order.push_back(d);
  }
  order.push_back(dim);
  return x.detach().permute(order).contiguous();
}

// The inverse of dim_last for a result whose last dim stands for `dim`.
Tensor dim_back(const Tensor& rows, int64_t dim) {
  std::vector<int64_t> order;
  const int64_t last = rows.dim() - 1;
  for (int64_t d = 0; d <= last; ++d) order.push_back(d == dim ? last : (d < dim ? d : d - 1));
  return rows.permute(order).contiguous();
}

// Shared by sort and topk: the values' gradient goes to the positions the indices name.
void record_scatter_back(const char* name, const Tensor& x, int64_t dim, const Tensor& values,
                         const Tensor& indices) {
  record(name, {x}, {values, indices},
         [shape = x.shape(), dim, saved_indices = SavedTensor(indices)](const std::vector<Tensor>& g) {
           Tensor zeros = Tensor::zeros(shape, g[0].dtype(), g[0].device());
           return std::vector<Tensor>{scatter_add_impl(zeros, dim, saved_indices.get(), g[0], 1.0)};
         });
}

// out (contiguous) += alpha * source's slices at the 1-D index64 (on out's device) along dim.
void add_rows(Tensor& out, int64_t dim, const Tensor& index64, const Tensor& source, double alpha) {
  if (out.device().is_cuda()) {
    Tensor out_rows = rows_view(out, dim);
    SY_CUDA_KERNEL("index_add", kernels::cuda::index_add_rows(out_rows, index64.reshape({index64.numel()}),
                                                              rows_view(source.contiguous(), dim), alpha));
  } else {
    cpu::scatter_add(out, dim, broadcast_along(index64, source.shape(), dim), source, alpha);
  }
}

Tensor cumsum_directed(const Tensor& x, int64_t dim, bool reverse) {
  require_cpu("cumsum", x);
  if (x.dim() == 0) return cumsum_directed(x.reshape({1}), 0, reverse).reshape({});
  dim = x.wrap_dim(dim);
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= x.size(d);
  for (int64_t d = dim + 1; d < x.dim(); ++d) inner *= x.size(d);
  DType out_dtype = is_floating(x.dtype()) ? x.dtype() : DType::kI64;
  Tensor out = Tensor::empty(x.shape(), out_dtype, x.device());
  cpu::cumsum(x.detach().contiguous(), outer, x.size(dim), inner, reverse, out);
  record(reverse ? "ReverseCumsumBackward" : "CumsumBackward", {x}, {out},
         [dim, reverse](const std::vector<Tensor>& g) {
           return std::vector<Tensor>{cumsum_directed(g[0], dim, !reverse)};
         });
  return out;
}

}  // namespace

std::pair<Tensor, Tensor> sort(const Tensor& x, int64_t dim, bool descending) {
  require_cpu("sort", x);
  if (x.dim() == 0) {
    auto [values, indices] = sort(x.reshape({1}), 0, descending);
    return {values.reshape({}), indices.reshape({})};
  }
  dim = x.wrap_dim(dim);
  Tensor rows = dim_last(x, dim);
  Tensor values = Tensor::empty(rows.shape(), x.dtype(), x.device());
  Tensor indices = Tensor::empty(rows.shape(), DType::kI64, x.device());
  cpu::sort_rows(rows, x.size(dim), descending, values, indices);
  values = dim_back(values, dim);
  indices = dim_back(indices, dim);
  record_scatter_back("SortBackward", x, dim, values, indices);
  return {values, indices};
}

Tensor argsort(const Tensor& x, int64_t dim, bool descending) { return sort(x.detach(), dim, descending).second; }

std::pair<Tensor, Tensor> topk(const Tensor& x, int64_t k, int64_t dim, bool largest) {
  if (x.dim() == 0) {
    auto [values, indices] = topk(x.reshape({1}), k, 0, largest);
    return {values.reshape({}), indices.reshape({})};
  }
  dim = x.wrap_dim(dim);
  SY_CHECK(k >= 0 && k <= x.size(dim), "topk: k = ", k, " out of range for dimension ", dim,
           " of size ", x.size(dim), " in ", ShapeString(x.shape()));
  Tensor rows = dim_last(x, dim);
  Shape out_shape = rows.shape();
  out_shape.back() = k;
  Tensor values = Tensor::empty(out_shape, x.dtype(), x.device());
  Tensor indices = Tensor::empty(out_shape, DType::kI64, x.device());
  if (x.device().is_cuda()) {
    SY_CUDA_KERNEL("topk", kernels::cuda::topk_rows(rows, x.size(dim), k, largest, values, indices));
  } else {
    cpu::topk_rows(rows, x.size(dim), k, largest, values, indices);
  }
  values = dim_back(values, dim);
  indices = dim_back(indices, dim);
  record_scatter_back("TopkBackward", x, dim, values, indices);
  return {values, indices};
}

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  dim = x.wrap_dim(dim);
  SY_CHECK(index.dim() == x.dim(), "gather: index ", ShapeString(index.shape()), " and x ",
           ShapeString(x.shape()), " must have the same number of dims");
  for (int64_t d = 0; d < x.dim(); ++d) {
    SY_CHECK(d == dim || index.size(d) <= x.size(d), "gather: index ", ShapeString(index.shape()),
             " is larger than x ", ShapeString(x.shape()), " in dimension ", d);
  }
  Tensor index64 = checked_index("gather", index, dim, x.size(dim), x.device());
  Tensor out = gather_impl(x, dim, index64);
  record("GatherBackward", {x}, {out}, [shape = x.shape(), dim, index64](const std::vector<Tensor>& g) {
    Tensor zeros = Tensor::zeros(shape, g[0].dtype(), g[0].device());
    return std::vector<Tensor>{scatter_add_impl(zeros, dim, index64, g[0], 1.0)};
  });
  return out;
}

Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src) {
  // A CUDA scatter_add runs on the host (scatter_add_impl): the MoE sequence balancing loss
  // scatters only (B, T*K) ones.
  require_same_device("scatter_add", x, src);
  dim = x.wrap_dim(dim);
  SY_CHECK(x.dtype() == src.dtype(), "scatter_add: x is ", dtype_name(x.dtype()), " but src is ",
           dtype_name(src.dtype()));
  SY_CHECK(index.dim() == x.dim() && src.dim() == x.dim(), "scatter_add: x ", ShapeString(x.shape()),
           ", index ", ShapeString(index.shape()), " and src ", ShapeString(src.shape()),
           " must have the same number of dims");
  for (int64_t d = 0; d < x.dim(); ++d) {
    SY_CHECK(index.size(d) <= src.size(d) && (d == dim || index.size(d) <= x.size(d)),
             "scatter_add: index ", ShapeString(index.shape()), " does not fit src ",
             ShapeString(src.shape()), " or x ", ShapeString(x.shape()), " in dimension ", d);
  }
  Tensor index64 = checked_index("scatter_add", index, dim, x.size(dim), x.device());
  Tensor out = scatter_add_impl(x, dim, index64, src, 1.0);
  record("ScatterAddBackward", {x, src}, {out},
         [dim, index64, src_shape = src.shape()](const std::vector<Tensor>& g) {
           Tensor picked = gather_impl(g[0], dim, index64);
           Tensor grad_src = picked;
           if (picked.shape() != src_shape) {
             // src elements outside the index's extent were never read.
             grad_src = Tensor::zeros(src_shape, g[0].dtype(), g[0].device());
             detail::as_strided(grad_src, picked.shape(), grad_src.strides(), 0).copy_(picked);
           }
           return std::vector<Tensor>{g[0], grad_src};
         });
  return out;
}

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  dim = x.wrap_dim(dim);
  SY_CHECK(index.dim() <= 1, "index_select: index must be 1-D, got ", ShapeString(index.shape()));
  Tensor index64 = checked_index("index_select", index, dim, x.size(dim), x.device());
  Shape shape = x.shape();
  shape[dim] = index64.numel();
  Tensor out = Tensor::empty(shape, x.dtype(), x.device());
  if (x.device().is_cuda()) {
    Tensor out_rows = rows_view(out, dim);
    SY_CUDA_KERNEL("index_select",
                   kernels::cuda::index_select_rows(rows_view(x.detach().contiguous(), dim),
                                                    index64.reshape({index64.numel()}), out_rows));
  } else {
    cpu::gather(x.detach(), dim, broadcast_along(index64, shape, dim), out);
  }
  record("IndexSelectBackward", {x}, {out}, [shape = x.shape(), dim, index64](const std::vector<Tensor>& g) {
    Tensor grad = Tensor::zeros(shape, g[0].dtype(), g[0].device());
    add_rows(grad, dim, index64, g[0], 1.0);
    return std::vector<Tensor>{grad};
  });
  return out;
}

Tensor index_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& source, double alpha) {
  require_same_device("index_add", x, source);
  dim = x.wrap_dim(dim);
  SY_CHECK(x.dtype() == source.dtype(), "index_add: x is ", dtype_name(x.dtype()), " but source is ",
           dtype_name(source.dtype()));
  SY_CHECK(index.dim() <= 1, "index_add: index must be 1-D, got ", ShapeString(index.shape()));
  Tensor index64 = checked_index("index_add", index, dim, x.size(dim), x.device());
  Shape expected = x.shape();
  expected[dim] = index64.numel();
  SY_CHECK(source.shape() == expected, "index_add: source ", ShapeString(source.shape()),
           " should be ", ShapeString(expected), " for x ", ShapeString(x.shape()), " and ",
           index64.numel(), " indices along dimension ", dim);
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  out.copy_(x.detach());
  add_rows(out, dim, index64, source.detach(), alpha);
  record("IndexAddBackward", {x, source}, {out}, [dim, index64, alpha](const std::vector<Tensor>& g) {
    Tensor grad_source = index_select(g[0], dim, index64);
    if (alpha != 1.0) grad_source.mul_(alpha);
    return std::vector<Tensor>{g[0], grad_source};
  });
  return out;
}

Tensor cumsum(const Tensor& x, int64_t dim) { return cumsum_directed(x, dim, false); }

Tensor bincount(const Tensor& x, int64_t minlength) {
  if (x.device().is_cuda()) {
    // Counted on the host: the MoE counts E experts over N*K indices, and the length of the
    // result depends on the largest value, which the host must know anyway.
    return bincount(x.detach().to(Device::CPU()), minlength).to(x.device());
  }
  SY_CHECK(x.dim() == 1 && is_integer(x.dtype()), "bincount: expected a 1-D integer tensor, got ",
           ShapeString(x.shape()), " ", dtype_name(x.dtype()));
  SY_CHECK(minlength >= 0, "bincount: minlength ", minlength, " is negative");
  Tensor values = x.detach().to(DType::kI64).contiguous();
  const int64_t* data = values.data<int64_t>();
  int64_t length = minlength;
  for (int64_t i = 0; i < values.numel(); ++i) {
    SY_CHECK(data[i] >= 0, "bincount: value ", data[i], " at position ", i, " is negative");
    length = std::max(length, data[i] + 1);
  }
  Tensor out = Tensor::empty({length}, DType::kI64, x.device());
  cpu::bincount(values, out);
  return out;
}

Tensor one_hot(const Tensor& x, int64_t num_classes) {
  if (x.device().is_cuda()) {
    // On the host, like bincount: group-limited routing one-hots only N x group_topk group
    // indices, and the bounds check needs the values there anyway.
    return one_hot(x.detach().to(Device::CPU()), num_classes).to(x.device());
  }
  SY_CHECK(is_integer(x.dtype()), "one_hot: expected an integer tensor, got ", dtype_name(x.dtype()));
  Tensor values = x.detach().to(DType::kI64).contiguous();
  const int64_t* data = values.data<int64_t>();
  if (num_classes < 0) {
    // As torch: -1 means one more than the largest value.
    SY_CHECK(values.numel() > 0, "one_hot: cannot infer num_classes from an empty tensor");
    num_classes = *std::max_element(data, data + values.numel()) + 1;
  }
  for (int64_t i = 0; i < values.numel(); ++i) {
    SY_CHECK(data[i] >= 0 && data[i] < num_classes, "one_hot: class ", data[i], " at position ", i,
             " is out of range for num_classes ", num_classes);
  }
  Shape shape = x.shape();
  shape.push_back(num_classes);
  Tensor out = Tensor::empty(shape, DType::kI64, x.device());
  cpu::one_hot(values, out);
  return out;
}

}  // namespace sy
