// How an op picks a kernel: CPU tensors go to core/kernels/cpu, CUDA tensors to
// core/kernels/cuda when this build has it. An op without a CUDA kernel says so.
#pragma once

#include "core/check.h"
#include "core/tensor.h"

namespace sy {

// Fails with "<op>: not implemented on CUDA" unless every tensor is on the CPU.
inline void require_cpu(const char* op, const Tensor& tensor) {
  if (tensor.defined() && !tensor.device().is_cpu()) {
    throw Error(absl::StrCat(op, ": not implemented on CUDA (tensor on ", tensor.device().to_string(), ")"));
  }
}

inline void require_same_device(const char* op, const Tensor& a, const Tensor& b) {
  SY_CHECK(a.device() == b.device(), op, ": tensors on ", a.device().to_string(), " and ",
           b.device().to_string());
}

}  // namespace sy

#ifdef SY_WITH_CUDA
#include "core/kernels/cuda/cuda_kernels.h"
#define SY_CUDA_KERNEL(op_name, call) call
#else
#define SY_CUDA_KERNEL(op_name, call) \
  throw ::sy::Error(::absl::StrCat(op_name, ": not implemented on CUDA (built without CUDA)"))
#endif
