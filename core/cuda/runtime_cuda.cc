// The per-device CUDA runtime state: streams and cuBLASLt handles, created on first use and
// kept for the process (they are part of the process-wide runtime, like the devices).
#include "core/cuda/runtime.h"

#include <array>
#include <mutex>

#include "core/device.h"

namespace sy::cuda {
namespace {

// Enough for the cuBLASLt kernels we pick (split-K included) on sm_80/sm_90.
constexpr size_t kCublasLtWorkspaceBytes = size_t{32} << 20;
constexpr int kMaxDevices = 64;

struct DeviceState {
  std::once_flag stream_once;
  cudaStream_t stream = nullptr;
  std::once_flag cublaslt_once;
  CublasLtContext cublaslt;
};

DeviceState& state_for(int device) {
  static std::array<DeviceState, kMaxDevices>* states = new std::array<DeviceState, kMaxDevices>();
  static const int count = cuda_device_count();  // fixed for the life of the process
  SY_CHECK(device >= 0 && device < count && device < kMaxDevices, "CUDA device ", device,
           " requested but ", count, " CUDA devices are visible");
  return (*states)[device];
}

}  // namespace

void fail_cuda(cudaError_t status, const char* expression, const char* file, int line) {
  throw Error(absl::StrCat(file, ":", line, ": CUDA error ", cudaGetErrorName(status), " (",
                           cudaGetErrorString(status), ") in ", expression));
}

void fail_cublas(cublasStatus_t status, const char* expression, const char* file, int line) {
  throw Error(absl::StrCat(file, ":", line, ": cuBLAS error ", static_cast<int>(status), " (",
                           cublasLtGetStatusString(status), ") in ", expression));
}

DeviceGuard::DeviceGuard(int device) {
  SY_CUDA_CHECK(cudaGetDevice(&previous_));
  if (previous_ != device) {
    SY_CUDA_CHECK(cudaSetDevice(device));
    changed_ = true;
  }
}

DeviceGuard::~DeviceGuard() {
  if (changed_) cudaSetDevice(previous_);  // a destructor must not throw
}

cudaStream_t current_stream(int device) {
  DeviceState& state = state_for(device);
  std::call_once(state.stream_once, [&] {
    DeviceGuard guard(device);
    SY_CUDA_CHECK(cudaStreamCreateWithFlags(&state.stream, cudaStreamNonBlocking));
  });
  return state.stream;
}

void synchronize(int device) { SY_CUDA_CHECK(cudaStreamSynchronize(current_stream(device))); }

const CublasLtContext& cublaslt_context(int device) {
  DeviceState& state = state_for(device);
  std::call_once(state.cublaslt_once, [&] {
    DeviceGuard guard(device);
    SY_CUBLAS_CHECK(cublasLtCreate(&state.cublaslt.handle));
    SY_CUDA_CHECK(cudaMalloc(&state.cublaslt.workspace, kCublasLtWorkspaceBytes));
    state.cublaslt.workspace_bytes = kCublasLtWorkspaceBytes;
  });
  return state.cublaslt;
}

}  // namespace sy::cuda
