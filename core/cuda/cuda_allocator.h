// The CUDA caching allocator: freed blocks stay cached per (device, stream) and size class
// and are handed out again, so the training loop's steady state makes no cudaMalloc calls.
#pragma once

#include "core/allocator.h"

namespace sy::cuda {

class CachingAllocator : public Allocator {
 public:
  // current/peak count blocks in use (rounded sizes); cached counts blocks kept for reuse.
  virtual AllocatorStats stats() const = 0;
  virtual void reset_peak() = 0;
  // Returns every cached block to the driver (waits for the device first).
  virtual void empty_cache() = 0;
};

// Sizes are rounded up to 512 B below 1 MiB and to 2 MiB at and above it.
size_t caching_allocator_round_size(size_t nbytes);

// The allocator of CUDA device `device` (fails clearly when the device is not visible).
CachingAllocator& caching_allocator_for(int device);

}  // namespace sy::cuda
