// CUDA runtime helpers: checked CUDA/cuBLASLt calls (file, line and the error string), one
// stream and one cuBLASLt handle (with its workspace) per device, created on first use.
// Include only from *_cuda.cc and .cu files: it needs the CUDA toolkit headers.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstddef>

#include "core/check.h"

namespace sy::cuda {

[[noreturn]] void fail_cuda(cudaError_t status, const char* expression, const char* file, int line);
[[noreturn]] void fail_cublas(cublasStatus_t status, const char* expression, const char* file, int line);

// The stream every kernel for `device` runs on (non-blocking, lives for the process).
cudaStream_t current_stream(int device);
// Blocks until the work queued on `device`'s current stream has finished.
void synchronize(int device);

struct CublasLtContext {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;  // used only on current_stream(device)
  size_t workspace_bytes = 0;
};
const CublasLtContext& cublaslt_context(int device);

// Makes `device` current for the scope and restores the previous one.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
  bool changed_ = false;
};

}  // namespace sy::cuda

#define SY_CUDA_CHECK(expression)                                                  \
  do {                                                                             \
    cudaError_t sy_cuda_status = (expression);                                     \
    if (sy_cuda_status != cudaSuccess) [[unlikely]] {                              \
      ::sy::cuda::fail_cuda(sy_cuda_status, #expression, __FILE__, __LINE__);      \
    }                                                                              \
  } while (0)

#define SY_CUBLAS_CHECK(expression)                                                \
  do {                                                                             \
    cublasStatus_t sy_cublas_status = (expression);                                \
    if (sy_cublas_status != CUBLAS_STATUS_SUCCESS) [[unlikely]] {                  \
      ::sy::cuda::fail_cublas(sy_cublas_status, #expression, __FILE__, __LINE__);  \
    }                                                                              \
  } while (0)

// After a kernel launch: reports a bad configuration or an earlier asynchronous fault.
#define SY_CUDA_CHECK_LAUNCH() SY_CUDA_CHECK(cudaGetLastError())
