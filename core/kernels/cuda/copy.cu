// Copies with dtype conversion and any strides, on and between devices and the host:
//   out[i] = convert(source[i]) for every multi-index i of out's shape (source may broadcast).
// Host<->device copies stage through a contiguous buffer: the strided/converting part runs
// on the CPU for the host side and in convert_kernel for the device side. fill writes one
// value into every element. No gradients here (copies are recorded by the calling op).
#include <cstring>

#include "core/kernels/cpu/cpu_kernels.h"
#include "core/kernels/cuda/cuda_kernels.h"
#include "core/kernels/cuda/loops.cuh"

namespace sy::kernels::cuda {
namespace {

// out = source with the bits unchanged (same dtype), elements of `size` bytes.
__global__ void copy_bits_kernel(char* out, const char* source, int size, int64_t n, StridedOffsets<2> offsets) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    int64_t o[2];
    offsets.offsets(i, o);
    switch (size) {
      case 1: reinterpret_cast<uint8_t*>(out)[o[0]] = reinterpret_cast<const uint8_t*>(source)[o[1]]; break;
      case 2: reinterpret_cast<uint16_t*>(out)[o[0]] = reinterpret_cast<const uint16_t*>(source)[o[1]]; break;
      case 4: reinterpret_cast<uint32_t*>(out)[o[0]] = reinterpret_cast<const uint32_t*>(source)[o[1]]; break;
      default: reinterpret_cast<uint64_t*>(out)[o[0]] = reinterpret_cast<const uint64_t*>(source)[o[1]]; break;
    }
  }
}

// out = convert(source), passing through the compute type V.
template <typename V>
__global__ void convert_kernel(void* out, DType out_dtype, const void* source, DType source_dtype, int64_t n,
                               StridedOffsets<2> offsets) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    int64_t o[2];
    offsets.offsets(i, o);
    store_as<V>(out, o[0], out_dtype, load_as<V>(source, o[1], source_dtype));
  }
}

// The value converts from double exactly as the CPU's store<T>(double) does.
__global__ void fill_kernel(void* out, DType dtype, double value, int64_t n, StridedOffsets<1> offsets) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    int64_t o[1];
    offsets.offsets(i, o);
    store_as<double>(out, o[0], dtype, value);
  }
}

bool is_integral(DType dtype) { return dtype == DType::kI32 || dtype == DType::kI64 || dtype == DType::kBool; }

// Both tensors on `device`, same shape.
void copy_on_device(const Tensor& source, Tensor& out, int device) {
  const int64_t n = out.numel();
  if (n == 0) return;
  sy::cuda::DeviceGuard guard(device);
  cudaStream_t stream = sy::cuda::current_stream(device);
  if (source.dtype() == out.dtype() && source.is_contiguous() && out.is_contiguous()) {
    SY_CUDA_CHECK(cudaMemcpyAsync(out.data_ptr(), source.data_ptr(), out.nbytes(), cudaMemcpyDeviceToDevice, stream));
    return;
  }
  StridedOffsets<2> offsets = make_strided_offsets<2>(out.shape(), {&out.strides(), &source.strides()});
  if (source.dtype() == out.dtype()) {
    copy_bits_kernel<<<grid_for(n), kThreads, 0, stream>>>(static_cast<char*>(out.data_ptr()),
                                                           static_cast<const char*>(source.data_ptr()),
                                                           static_cast<int>(element_size(out.dtype())), n, offsets);
  } else if (is_integral(source.dtype()) && is_integral(out.dtype())) {
    convert_kernel<int64_t><<<grid_for(n), kThreads, 0, stream>>>(out.data_ptr(), out.dtype(), source.data_ptr(),
                                                                 source.dtype(), n, offsets);
  } else if (source.dtype() == DType::kF64 || out.dtype() == DType::kF64 || is_integral(source.dtype()) ||
             is_integral(out.dtype())) {
    // Integers pass through double: exact for i32, and the float conversions round once.
    convert_kernel<double><<<grid_for(n), kThreads, 0, stream>>>(out.data_ptr(), out.dtype(), source.data_ptr(),
                                                                source.dtype(), n, offsets);
  } else {
    convert_kernel<float><<<grid_for(n), kThreads, 0, stream>>>(out.data_ptr(), out.dtype(), source.data_ptr(),
                                                               source.dtype(), n, offsets);
  }
  SY_CUDA_CHECK_LAUNCH();
}

}  // namespace

void copy(const Tensor& source, Tensor& out) {
  SY_CHECK(source.shape() == out.shape(), "cuda copy: source ", ShapeString(source.shape()), " into ",
           ShapeString(out.shape()));
  if (out.numel() == 0) return;
  const bool source_on_host = source.device().is_cpu(), out_on_host = out.device().is_cpu();
  SY_CHECK(!(source_on_host && out_on_host), "cuda copy: both tensors are on the CPU");

  if (source_on_host) {
    // Host -> device: convert and gather on the CPU, then one contiguous transfer.
    const int device = out.device().index;
    Tensor staging = Tensor::empty(out.shape(), out.dtype());
    cpu::copy(source, staging);
    Tensor target = out.is_contiguous() ? out : Tensor::empty(out.shape(), out.dtype(), out.device());
    {
      sy::cuda::DeviceGuard guard(device);
      // From pageable memory the call returns once `staging` has been read, so it may be freed.
      SY_CUDA_CHECK(cudaMemcpyAsync(target.data_ptr(), staging.data_ptr(), staging.nbytes(),
                                    cudaMemcpyHostToDevice, sy::cuda::current_stream(device)));
    }
    if (!target.same(out)) copy_on_device(target, out, device);
    return;
  }

  const int source_device = source.device().index;
  if (out_on_host) {
    // Device -> host: convert and gather on the device, one transfer, then scatter on the CPU.
    Tensor packed = source;
    if (!source.is_contiguous() || source.dtype() != out.dtype()) {
      packed = Tensor::empty(source.shape(), out.dtype(), source.device());
      copy_on_device(source, packed, source_device);
    }
    Tensor target = out.is_contiguous() ? out : Tensor::empty(out.shape(), out.dtype());
    {
      sy::cuda::DeviceGuard guard(source_device);
      cudaStream_t stream = sy::cuda::current_stream(source_device);
      SY_CUDA_CHECK(cudaMemcpyAsync(target.data_ptr(), packed.data_ptr(), packed.nbytes(), cudaMemcpyDeviceToHost,
                                    stream));
      SY_CUDA_CHECK(cudaStreamSynchronize(stream));
    }
    if (!target.same(out)) cpu::copy(target, out);
    return;
  }

  const int out_device = out.device().index;
  if (source_device == out_device) {
    copy_on_device(source, out, out_device);
    return;
  }
  // Between devices: pack on the source device, transfer peer to peer, scatter on the target.
  Tensor packed = source;
  if (!source.is_contiguous() || source.dtype() != out.dtype()) {
    packed = Tensor::empty(source.shape(), out.dtype(), source.device());
    copy_on_device(source, packed, source_device);
  }
  // The transfer runs on the target's stream; the source's queued work must finish first.
  sy::cuda::synchronize(source_device);
  Tensor target = out.is_contiguous() ? out : Tensor::empty(out.shape(), out.dtype(), out.device());
  {
    sy::cuda::DeviceGuard guard(out_device);
    SY_CUDA_CHECK(cudaMemcpyPeerAsync(target.data_ptr(), out_device, packed.data_ptr(), source_device,
                                      packed.nbytes(), sy::cuda::current_stream(out_device)));
  }
  if (!target.same(out)) copy_on_device(target, out, out_device);
  // `packed` may go back to the source device's cache; keep it alive until the copy is done.
  sy::cuda::synchronize(out_device);
}

void fill(Tensor& out, double value) {
  const int device = device_of(out, "cuda fill");
  const int64_t n = out.numel();
  if (n == 0) return;
  sy::cuda::DeviceGuard guard(device);
  StridedOffsets<1> offsets = make_strided_offsets<1>(out.shape(), {&out.strides()});
  cudaStream_t stream = sy::cuda::current_stream(device);
  fill_kernel<<<grid_for(n), kThreads, 0, stream>>>(out.data_ptr(), out.dtype(), value, n, offsets);
  SY_CUDA_CHECK_LAUNCH();
}

}  // namespace sy::kernels::cuda
