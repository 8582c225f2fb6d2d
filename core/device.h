// Where a tensor's memory lives: the CPU or CUDA device n.
#pragma once

#include <string>

namespace sy {

enum class DeviceType : uint8_t { kCPU, kCUDA };

struct Device {
  DeviceType type = DeviceType::kCPU;
  int index = 0;

  static Device CPU() { return {DeviceType::kCPU, 0}; }
  static Device CUDA(int index = 0) { return {DeviceType::kCUDA, index}; }
  bool is_cpu() const { return type == DeviceType::kCPU; }
  bool is_cuda() const { return type == DeviceType::kCUDA; }
  bool operator==(const Device&) const = default;
  std::string to_string() const;
};

// True when this build has the CUDA backend and the process sees at least one device.
bool cuda_available();
int cuda_device_count();

}  // namespace sy
