// Uniform random numbers from Philox4x32-10 (core/random.h), the same values as the CPU:
//   out[i] = (philox(seed, offset + i / 4)[i % 4] >> 8) * 2^-24   for the row-major index i
// One thread per Philox counter writes its four values. Not differentiable.
#include "core/kernels/cuda/cuda_kernels.h"
#include "core/kernels/cuda/loops.cuh"

namespace sy::kernels::cuda {
namespace {

__global__ void philox_uniform_kernel(PhiloxState state, void* out, DType dtype, int64_t n,
                                      StridedOffsets<1> offsets) {
  const int64_t counters = (n + 3) / 4;
  for (int64_t g = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; g < counters;
       g += int64_t{gridDim.x} * blockDim.x) {
    const Philox4 block = philox4x32_10(state.seed, state.offset + static_cast<uint64_t>(g), 0);
    for (int64_t lane = 0; lane < 4 && 4 * g + lane < n; ++lane) {
      int64_t o[1];
      offsets.offsets(4 * g + lane, o);
      store_as<float>(out, o[0], dtype, static_cast<float>(block.x[lane] >> 8) * (1.0f / 16777216.0f));
    }
  }
}

}  // namespace

void philox_uniform(PhiloxState state, Tensor& out) {
  SY_CHECK(is_floating(out.dtype()), "cuda philox_uniform: expected a floating-point tensor, got ",
           dtype_name(out.dtype()));
  const int device = device_of(out, "cuda philox_uniform");
  const int64_t n = out.numel();
  if (n == 0) return;
  sy::cuda::DeviceGuard guard(device);
  StridedOffsets<1> offsets = make_strided_offsets<1>(out.shape(), {&out.strides()});
  philox_uniform_kernel<<<grid_for((n + 3) / 4), kThreads, 0, sy::cuda::current_stream(device)>>>(
      state, out.data_ptr(), out.dtype(), n, offsets);
  SY_CUDA_CHECK_LAUNCH();
}

}  // namespace sy::kernels::cuda
