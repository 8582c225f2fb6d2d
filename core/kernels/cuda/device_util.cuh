// Device helpers shared by the CUDA kernel files.
#pragma once

#include <cstdint>

namespace sy::kernels::cuda {

// Moves one element of `size` bytes as raw bits, without reading it as a number (any dtype,
// exactly).
__device__ __forceinline__ void move_element(const void* from, int64_t from_index, void* to, int64_t to_index,
                                             int size) {
  switch (size) {
    case 1: static_cast<uint8_t*>(to)[to_index] = static_cast<const uint8_t*>(from)[from_index]; return;
    case 2: static_cast<uint16_t*>(to)[to_index] = static_cast<const uint16_t*>(from)[from_index]; return;
    case 4: static_cast<uint32_t*>(to)[to_index] = static_cast<const uint32_t*>(from)[from_index]; return;
    default: static_cast<uint64_t*>(to)[to_index] = static_cast<const uint64_t*>(from)[from_index]; return;
  }
}

}  // namespace sy::kernels::cuda
