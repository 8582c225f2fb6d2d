// What the cuBLASLt users (gemm_cuda.cc, grouped_gemm_cuda.cc) share: the CUDA data type of
// a dtype, the pointer alignment cuBLASLt may assume, and owning handles for its descriptors.
#pragma once

#include <cublasLt.h>

#include <cstdint>
#include <memory>

#include "core/check.h"
#include "core/dtype.h"

namespace sy::kernels::cuda::cublaslt {

inline cudaDataType_t data_type(DType dtype) {
  switch (dtype) {
    case DType::kF32: return CUDA_R_32F;
    case DType::kBF16: return CUDA_R_16BF;
    case DType::kF16: return CUDA_R_16F;
    case DType::kF64: return CUDA_R_64F;
    default: SY_FAIL("cuBLASLt: no matrix product for ", dtype_name(dtype), " tensors");
  }
}

// The largest power of two (at most 256) dividing the address: what cuBLASLt may assume.
inline uint32_t alignment_of(const void* pointer) {
  auto address = reinterpret_cast<uintptr_t>(pointer);
  uint32_t alignment = 256;
  while (alignment > 1 && address % alignment != 0) alignment /= 2;
  return alignment;
}

struct LayoutDeleter {
  void operator()(cublasLtMatrixLayoutOpaque_t* layout) const { cublasLtMatrixLayoutDestroy(layout); }
};
struct DescDeleter {
  void operator()(cublasLtMatmulDescOpaque_t* desc) const { cublasLtMatmulDescDestroy(desc); }
};
struct PreferenceDeleter {
  void operator()(cublasLtMatmulPreferenceOpaque_t* preference) const { cublasLtMatmulPreferenceDestroy(preference); }
};
using Layout = std::unique_ptr<cublasLtMatrixLayoutOpaque_t, LayoutDeleter>;

}  // namespace sy::kernels::cuda::cublaslt
