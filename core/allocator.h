// Allocators own device memory. The CPU allocator hands out 64-byte-aligned blocks and keeps
// freed blocks of 1 MiB and more for reuse (up to 2 GiB); the
// CUDA caching allocator (core/cuda/) keeps freed blocks per stream and size class.
#pragma once

#include <cstddef>

#include "core/device.h"

namespace sy {

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(size_t nbytes) = 0;
  virtual void free(void* pointer, size_t nbytes) = 0;
  virtual Device device() const = 0;
};

struct AllocatorStats {
  size_t current_bytes = 0;
  size_t peak_bytes = 0;
  size_t cached_bytes = 0;  // held by a caching allocator but not in use
  size_t allocations = 0;   // calls to the system allocator
};

Allocator& cpu_allocator();
AllocatorStats cpu_allocator_stats();
void reset_cpu_peak_stats();
// Returns the cached free blocks of the CPU allocator to the system.
void cpu_empty_cache();

// The allocator for a device (CUDA only under SY_WITH_CUDA).
Allocator& allocator_for(Device device);

}  // namespace sy
