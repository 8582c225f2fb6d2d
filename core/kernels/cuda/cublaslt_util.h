// What the cuBLASLt users (gemm_cuda.cc, grouped_gemm_cuda.cc) share: the CUDA data type of
// a dtype, the pointer alignment cuBLASLt may assume, and owning handles for its descriptors.
#pragma once

#include <cublasLt.h>

#include <cstdint>
#include <memory>
#include <utility>

#include "core/check.h"
#include "core/cuda/runtime.h"
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

// The heuristic's best algorithm for D = A B with these descriptors (C is D), given the
// workspace it may use and how aligned the A, B and D pointers really are: views and
// groups of rows start at arbitrary offsets, less aligned than fresh allocations.
// Returns false when cuBLASLt has no algorithm.
inline bool best_algorithm(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t a_layout,
                           cublasLtMatrixLayout_t b_layout, cublasLtMatrixLayout_t d_layout, uint64_t workspace_bytes,
                           const void* a, const void* b, const void* d, cublasLtMatmulHeuristicResult_t* result) {
  cublasLtMatmulPreference_t raw_preference = nullptr;
  SY_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&raw_preference));
  std::unique_ptr<cublasLtMatmulPreferenceOpaque_t, PreferenceDeleter> preference(raw_preference);
  SY_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(raw_preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                       &workspace_bytes, sizeof workspace_bytes));
  const std::pair<cublasLtMatmulPreferenceAttributes_t, const void*> alignments[] = {
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, a},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, b},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, d},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, d}};
  for (const auto& [attribute, pointer] : alignments) {
    uint32_t alignment = alignment_of(pointer);
    SY_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(raw_preference, attribute, &alignment, sizeof alignment));
  }
  *result = {};
  int found = 0;
  SY_CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(handle, desc, a_layout, b_layout, d_layout, d_layout, raw_preference,
                                                 1, result, &found));
  return found > 0;
}

}  // namespace sy::kernels::cuda::cublaslt
