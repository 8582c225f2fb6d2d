#include "core/device.h"

#include "absl/strings/str_cat.h"

#ifdef SY_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace sy {

std::string Device::to_string() const {
  return is_cpu() ? std::string("cpu") : absl::StrCat("cuda:", index);
}

int cuda_device_count() {
#ifdef SY_WITH_CUDA
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return count;
#else
  return 0;
#endif
}

bool cuda_available() { return cuda_device_count() > 0; }

}  // namespace sy
