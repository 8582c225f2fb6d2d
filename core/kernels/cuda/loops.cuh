// Shared machinery of the CUDA kernels: element load/store with the dtype chosen at run time
// (bf16/f16 computed in f32), strided N-d offsets with dimensions coalesced on the host,
// and launch sizes. Run-time dtypes keep template instantiations (and compile time) few.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <array>
#include <cstdint>

#include "core/check.h"
#include "core/cuda/runtime.h"
#include "core/dtype.h"
#include "core/tensor.h"

namespace sy::kernels::cuda {

constexpr int kThreads = 256;
// Coalesced dimensions a strided kernel handles; more is an error naming the shape.
constexpr int kMaxDims = 8;

template <typename V>
__device__ __forceinline__ V load_as(const void* base, int64_t index, DType dtype) {
  switch (dtype) {
    case DType::kF64: return static_cast<V>(static_cast<const double*>(base)[index]);
    case DType::kF32: return static_cast<V>(static_cast<const float*>(base)[index]);
    case DType::kBF16: return static_cast<V>(__bfloat162float(static_cast<const __nv_bfloat16*>(base)[index]));
    case DType::kF16: return static_cast<V>(__half2float(static_cast<const __half*>(base)[index]));
    case DType::kI32: return static_cast<V>(static_cast<const int32_t*>(base)[index]);
    case DType::kI64: return static_cast<V>(static_cast<const int64_t*>(base)[index]);
    case DType::kBool: return static_cast<V>(static_cast<const bool*>(base)[index] ? 1 : 0);
  }
  return V(0);
}

template <typename V>
__device__ __forceinline__ void store_as(void* base, int64_t index, DType dtype, V value) {
  switch (dtype) {
    case DType::kF64: static_cast<double*>(base)[index] = static_cast<double>(value); return;
    case DType::kF32: static_cast<float*>(base)[index] = static_cast<float>(value); return;
    case DType::kBF16:
      static_cast<__nv_bfloat16*>(base)[index] = __float2bfloat16_rn(static_cast<float>(value));
      return;
    case DType::kF16: static_cast<__half*>(base)[index] = __float2half_rn(static_cast<float>(value)); return;
    case DType::kI32: static_cast<int32_t*>(base)[index] = static_cast<int32_t>(value); return;
    case DType::kI64: static_cast<int64_t*>(base)[index] = static_cast<int64_t>(value); return;
    case DType::kBool: static_cast<bool*>(base)[index] = value != V(0); return;
  }
}

// Element offsets of N operands that share a shape (broadcast operands carry stride 0), for
// the linear (row-major) index of an element. Built on the host; passed by value.
template <int N>
struct StridedOffsets {
  int dims = 0;
  int64_t sizes[kMaxDims] = {};
  int64_t strides[N][kMaxDims] = {};

  __device__ __forceinline__ void offsets(int64_t linear, int64_t (&out)[N]) const {
    for (int k = 0; k < N; ++k) out[k] = 0;
    for (int d = dims - 1; d >= 0; --d) {
      int64_t index = linear % sizes[d];
      linear /= sizes[d];
      for (int k = 0; k < N; ++k) out[k] += index * strides[k][d];
    }
  }
};

// Drops size-1 dims and merges dims that every operand steps through as one.
template <int N>
StridedOffsets<N> make_strided_offsets(const Shape& shape, const std::array<const Shape*, N>& strides) {
  StridedOffsets<N> result;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    bool merge = result.dims > 0;
    for (int k = 0; k < N && merge; ++k) {
      merge = result.strides[k][result.dims - 1] == (*strides[k])[d] * shape[d];
    }
    if (merge) {
      result.sizes[result.dims - 1] *= shape[d];
      for (int k = 0; k < N; ++k) result.strides[k][result.dims - 1] = (*strides[k])[d];
      continue;
    }
    SY_CHECK(result.dims < kMaxDims, "CUDA strided kernel: shape ", ShapeString(shape),
             " has more than ", kMaxDims, " dimensions after merging");
    result.sizes[result.dims] = shape[d];
    for (int k = 0; k < N; ++k) result.strides[k][result.dims] = (*strides[k])[d];
    ++result.dims;
  }
  return result;
}

// Blocks for a grid-stride loop over n elements.
inline unsigned grid_for(int64_t n) {
  int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(std::min<int64_t>(std::max<int64_t>(blocks, 1), 65536));
}

// The device index of a CUDA tensor, checked.
inline int device_of(const Tensor& tensor, const char* op) {
  SY_CHECK(tensor.device().is_cuda(), op, ": expected a CUDA tensor, got one on ",
           tensor.device().to_string());
  return tensor.device().index;
}

// Sum over a block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
template <typename A>
__device__ __forceinline__ A block_sum(A value, A* shared32) {
  for (int delta = 16; delta > 0; delta /= 2) value += __shfl_xor_sync(0xffffffffu, value, delta);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  __syncthreads();  // shared32 may still be read by a previous reduction
  if (lane == 0) shared32[warp] = value;
  __syncthreads();
  value = lane < static_cast<int>(blockDim.x / 32) ? shared32[lane] : A(0);
  for (int delta = 16; delta > 0; delta /= 2) value += __shfl_xor_sync(0xffffffffu, value, delta);
  return value;
}

template <typename A>
__device__ __forceinline__ A block_max(A value, A* shared32) {
  for (int delta = 16; delta > 0; delta /= 2) value = max(value, __shfl_xor_sync(0xffffffffu, value, delta));
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  __syncthreads();
  if (lane == 0) shared32[warp] = value;
  __syncthreads();
  value = lane < static_cast<int>(blockDim.x / 32) ? shared32[lane] : shared32[0];
  for (int delta = 16; delta > 0; delta /= 2) value = max(value, __shfl_xor_sync(0xffffffffu, value, delta));
  return value;
}

}  // namespace sy::kernels::cuda
