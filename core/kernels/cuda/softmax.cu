// Softmax over the last dim, one block per row (R rows of length L):
//   m = max_j x[j],  s = sum_j exp(x[j] - m),  out[j] = exp(x[j] - m) / s
// accumulated in f32 (f64 for f64 tensors). Gradient contract (applied by the op, from the
// saved output y): dx = y * (dy - sum_j dy[j] * y[j]), written, not accumulated.
#include "core/kernels/cuda/cuda_kernels.h"
#include "core/kernels/cuda/loops.cuh"

namespace sy::kernels::cuda {
namespace {

template <typename A>
__global__ void softmax_rows_kernel(void* out, const void* x, DType dtype, int64_t row_length) {
  __shared__ A shared32[32];
  const int64_t row_start = blockIdx.x * row_length;
  A row_max = -INFINITY;
  for (int64_t j = threadIdx.x; j < row_length; j += blockDim.x) {
    row_max = max(row_max, load_as<A>(x, row_start + j, dtype));
  }
  row_max = block_max(row_max, shared32);
  A sum = 0;
  for (int64_t j = threadIdx.x; j < row_length; j += blockDim.x) {
    sum += exp(load_as<A>(x, row_start + j, dtype) - row_max);
  }
  const A inverse = A(1) / block_sum(sum, shared32);
  for (int64_t j = threadIdx.x; j < row_length; j += blockDim.x) {
    store_as<A>(out, row_start + j, dtype, exp(load_as<A>(x, row_start + j, dtype) - row_max) * inverse);
  }
}

}  // namespace

void softmax_last_dim(const Tensor& x, Tensor& out) {
  SY_CHECK(x.shape() == out.shape() && x.dtype() == out.dtype() && x.is_contiguous() && out.is_contiguous(),
           "cuda softmax: x ", ShapeString(x.shape()), " ", dtype_name(x.dtype()), " out ",
           ShapeString(out.shape()), " ", dtype_name(out.dtype()), " (same shape and dtype, contiguous)");
  SY_CHECK(is_floating(x.dtype()), "cuda softmax: expected a floating-point tensor, got ", dtype_name(x.dtype()));
  const int device = device_of(out, "cuda softmax");
  SY_CHECK(x.device() == out.device(), "cuda softmax: x on ", x.device().to_string());
  const int64_t row_length = x.dim() == 0 ? 1 : x.size(-1);
  if (x.numel() == 0) return;
  const int64_t rows = x.numel() / row_length;
  SY_CHECK(rows <= INT32_MAX, "cuda softmax: ", rows, " rows exceed the grid");
  sy::cuda::DeviceGuard guard(device);
  cudaStream_t stream = sy::cuda::current_stream(device);
  // Short rows leave most of a 256-thread block idle; 32..256 threads by row length.
  const int threads = static_cast<int>(std::min<int64_t>(256, (row_length + 31) / 32 * 32));
  if (x.dtype() == DType::kF64) {
    softmax_rows_kernel<double><<<static_cast<unsigned>(rows), threads, 0, stream>>>(out.data_ptr(), x.data_ptr(),
                                                                                   x.dtype(), row_length);
  } else {
    softmax_rows_kernel<float><<<static_cast<unsigned>(rows), threads, 0, stream>>>(out.data_ptr(), x.data_ptr(),
                                                                                  x.dtype(), row_length);
  }
  SY_CUDA_CHECK_LAUNCH();
}

}  // namespace sy::kernels::cuda
