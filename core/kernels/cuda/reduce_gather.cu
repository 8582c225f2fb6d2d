// Row reductions and gather on CUDA:
//   reduce_rows: out[r] = sum / max / min of x[r, 0..L) for contiguous rows (R, L); sums in f64
//                (the CPU sums f32 in f64 too); max/min return NaN when the row holds one
//   gather:      out[i_0..i_n] = x[i_0.., index[i_0..i_n] at dim, ..i_n] (index within x's range,
//                checked by the op); elements moved as raw bits, so any dtype is exact
// Gradient contract (applied by the ops): sum's gradient is broadcast back; max/min's goes to
// the first extremal element; gather's is a scatter_add at the same index.
#include <cmath>

#include "core/kernels/cuda/cuda_kernels.h"
#include "core/kernels/cuda/loops.cuh"
#include "core/kernels/cuda/device_util.cuh"

namespace sy::kernels::cuda {
namespace {

constexpr int kReduceThreads = 256;

// max/min of two values in f64, NaN winning (the CPU's rule: a NaN, once seen, stays).
__device__ __forceinline__ double extremal(double a, double b, bool take_max) {
  if (isnan(a)) return a;
  if (isnan(b)) return b;
  return take_max ? fmax(a, b) : fmin(a, b);
}

// One block per row (grid-stride over rows); every thread folds a strided slice of the row,
// then the block combines the partials. Values go through f64: exact for every float dtype.
__global__ void reduce_rows_kernel(const void* x, void* out, DType dtype, ReduceOp op, int64_t rows,
                                   int64_t length) {
  __shared__ double shared[kReduceThreads / 32];
  const bool is_sum = op == ReduceOp::kSum, take_max = op == ReduceOp::kMax;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t start = row * length;
    double value = is_sum || length == 0 ? 0.0 : load_as<double>(x, start, dtype);
    for (int64_t j = threadIdx.x; j < length; j += blockDim.x) {
      const double v = load_as<double>(x, start + j, dtype);
      value = is_sum ? value + v : extremal(value, v, take_max);
    }
    if (is_sum) {
      value = block_sum(value, shared);
    } else {
      for (int delta = 16; delta > 0; delta /= 2) {
        value = extremal(value, __shfl_xor_sync(0xffffffffu, value, delta), take_max);
      }
      const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
      __syncthreads();
      if (lane == 0) shared[warp] = value;
      __syncthreads();
      value = shared[0];
      for (int w = 1; w < static_cast<int>(blockDim.x / 32); ++w) value = extremal(value, shared[w], take_max);
    }
    if (threadIdx.x == 0) store_as<double>(out, row, dtype, value);
    __syncthreads();  // shared is reused by the next row
  }
}

// The index's shape and x's strides (in elements), for turning an output position into x's.
struct GatherLayout {
  int dims = 0;
  int dim = 0;
  int64_t sizes[kMaxDims] = {};
  int64_t x_strides[kMaxDims] = {};
};

// x points at x's first element (its offset applied); its strides step from there.
__global__ void gather_kernel(const void* x, const int64_t* index, void* out, int size, GatherLayout layout,
                              int64_t total) {
  for (int64_t linear = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; linear < total;
       linear += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t rest = linear, offset = 0;
    for (int d = layout.dims - 1; d >= 0; --d) {
      const int64_t coordinate = rest % layout.sizes[d];
      rest /= layout.sizes[d];
      offset += (d == layout.dim ? index[linear] : coordinate) * layout.x_strides[d];
    }
    move_element(x, offset, out, linear, size);
  }
}

}  // namespace

void reduce_rows(ReduceOp op, const Tensor& x, int64_t row_length, Tensor& out) {
  SY_CHECK(x.is_contiguous() && out.is_contiguous() && out.dtype() == x.dtype(),
           "cuda reduce_rows: expected contiguous x and out of one dtype");
  const int device = device_of(x, "cuda reduce_rows");
  SY_CHECK(out.device() == x.device(), "cuda reduce_rows: out on ", out.device().to_string(), " for x on ",
           x.device().to_string());
  const int64_t rows = out.numel();
  SY_CHECK(rows * row_length == x.numel(), "cuda reduce_rows: ", rows, " rows of ", row_length, " for ",
           x.numel(), " elements");
  SY_CHECK(op == ReduceOp::kSum || row_length > 0 || rows == 0, "max/min of an empty row");
  // The CPU sums i64 in f64 as well, but keeps its max/min exact.
  SY_CHECK(op == ReduceOp::kSum || x.dtype() != DType::kI64, "cuda reduce_rows: no i64 max/min");
  if (rows == 0) return;
  sy::cuda::DeviceGuard guard(device);
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(rows, 65536));
  reduce_rows_kernel<<<blocks, kReduceThreads, 0, sy::cuda::current_stream(device)>>>(
      x.data_ptr(), out.data_ptr(), x.dtype(), op, rows, row_length);
  SY_CUDA_CHECK_LAUNCH();
}

void gather(const Tensor& x, int64_t dim, const Tensor& index, Tensor& out) {
  SY_CHECK(index.is_contiguous() && index.dtype() == DType::kI64 && out.is_contiguous() &&
               out.shape() == index.shape() && out.dtype() == x.dtype() && index.dim() == x.dim(),
           "cuda gather: x ", ShapeString(x.shape()), ", index ", ShapeString(index.shape()), ", out ",
           ShapeString(out.shape()), " (expected a contiguous i64 index and out of its shape)");
  const int device = device_of(x, "cuda gather");
  SY_CHECK(index.device() == x.device() && out.device() == x.device(), "cuda gather: x on ",
           x.device().to_string(), ", index on ", index.device().to_string(), ", out on ",
           out.device().to_string());
  SY_CHECK(x.dim() <= kMaxDims, "cuda gather: ", x.dim(), " dims (at most ", kMaxDims, ")");
  if (out.numel() == 0) return;
  GatherLayout layout;
  layout.dims = static_cast<int>(x.dim());
  layout.dim = static_cast<int>(dim);
  for (int64_t d = 0; d < x.dim(); ++d) {
    layout.sizes[d] = index.size(d);
    layout.x_strides[d] = x.stride(d);
  }
  sy::cuda::DeviceGuard guard(device);
  gather_kernel<<<grid_for(out.numel()), kThreads, 0, sy::cuda::current_stream(device)>>>(
      x.data_ptr(), index.data<int64_t>(), out.data_ptr(), static_cast<int>(element_size(x.dtype())), layout,
      out.numel());
  SY_CUDA_CHECK_LAUNCH();
}

}  // namespace sy::kernels::cuda
