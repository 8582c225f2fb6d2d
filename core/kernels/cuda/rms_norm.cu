// RMS normalization over the last dim C, one block per row:
//   rstd = 1 / sqrt(mean_c x[c]^2 + eps),   out[c] = x[c] * rstd * weight[c]
// accumulated in f32 (f64 for f64 tensors); rstd (one per row, f32 or f64) is saved for the
// backward: dx = rstd * (w*dy - x * rstd^2 * mean_c(w*dy*x)), dweight += sum_rows dy*x*rstd.
#include "core/kernels/cuda/cuda_kernels.h"
#include "core/kernels/cuda/loops.cuh"

namespace sy::kernels::cuda {
namespace {

template <typename A>
__global__ void rms_norm_kernel(void* out, void* rstd_out, DType rstd_dtype, const void* x, const void* weight,
                                DType weight_dtype, DType dtype, int64_t width, A eps) {
  __shared__ A shared32[32];
  const int64_t row = blockIdx.x, row_start = row * width;
  A sum_squares = 0;
  for (int64_t c = threadIdx.x; c < width; c += blockDim.x) {
    A value = load_as<A>(x, row_start + c, dtype);
    sum_squares += value * value;
  }
  const A rstd = A(1) / sqrt(block_sum(sum_squares, shared32) / static_cast<A>(width) + eps);
  for (int64_t c = threadIdx.x; c < width; c += blockDim.x) {
    A value = load_as<A>(x, row_start + c, dtype) * rstd * load_as<A>(weight, c, weight_dtype);
    store_as<A>(out, row_start + c, dtype, value);
  }
  if (threadIdx.x == 0) store_as<A>(rstd_out, row, rstd_dtype, rstd);
}

}  // namespace

void rms_norm(const Tensor& x, const Tensor& weight, double eps, Tensor& out, Tensor& rstd) {
  SY_CHECK(x.dim() >= 1 && weight.dim() == 1 && weight.size(0) == x.size(-1) && out.shape() == x.shape() &&
               rstd.numel() * x.size(-1) == x.numel(),
           "cuda rms_norm: x ", ShapeString(x.shape()), " weight ", ShapeString(weight.shape()), " out ",
           ShapeString(out.shape()), " rstd ", ShapeString(rstd.shape()), " (expected x (..., C), weight (C), rstd (rows))");
  SY_CHECK(x.is_contiguous() && out.is_contiguous() && weight.is_contiguous() && rstd.is_contiguous(),
           "cuda rms_norm: tensors must be contiguous");
  SY_CHECK(is_floating(x.dtype()) && out.dtype() == x.dtype() && is_floating(weight.dtype()) &&
               (rstd.dtype() == DType::kF32 || rstd.dtype() == DType::kF64),
           "cuda rms_norm: x ", dtype_name(x.dtype()), " weight ", dtype_name(weight.dtype()), " out ",
           dtype_name(out.dtype()), " rstd ", dtype_name(rstd.dtype()));
  const int device = device_of(out, "cuda rms_norm");
  SY_CHECK(x.device() == out.device() && weight.device() == out.device() && rstd.device() == out.device(),
           "cuda rms_norm: tensors on different devices");
  if (x.numel() == 0) return;
  const int64_t width = x.size(-1), rows = x.numel() / width;
  SY_CHECK(rows <= INT32_MAX, "cuda rms_norm: ", rows, " rows exceed the grid");
  sy::cuda::DeviceGuard guard(device);
  cudaStream_t stream = sy::cuda::current_stream(device);
  const int threads = static_cast<int>(std::min<int64_t>(256, (width + 31) / 32 * 32));
  const unsigned blocks = static_cast<unsigned>(rows);
  if (x.dtype() == DType::kF64) {
    rms_norm_kernel<double><<<blocks, threads, 0, stream>>>(out.data_ptr(), rstd.data_ptr(), rstd.dtype(),
                                                            x.data_ptr(), weight.data_ptr(), weight.dtype(),
                                                            x.dtype(), width, eps);
  } else {
    rms_norm_kernel<float><<<blocks, threads, 0, stream>>>(out.data_ptr(), rstd.data_ptr(), rstd.dtype(),
                                                           x.data_ptr(), weight.data_ptr(), weight.dtype(),
                                                           x.dtype(), width, static_cast<float>(eps));
  }
  SY_CUDA_CHECK_LAUNCH();
}

}  // namespace sy::kernels::cuda
