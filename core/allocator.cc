#include "core/allocator.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <map>
#include <mutex>

#include "core/check.h"

#ifdef SY_WITH_CUDA
#include "core/cuda/cuda_allocator.h"
#endif

namespace sy {
namespace {

constexpr size_t kCpuAlignment = 64;
// Blocks of at least this size are kept on free for reuse: a training step allocates the
// same large activations every iteration, and returning them to the system each time
// (glibc unmaps them) costs a page fault per 4 KiB on the next step.
constexpr size_t kCachedBlockMinimum = 1 << 20;
constexpr size_t kCachedBlockRounding = 1 << 16;
constexpr size_t kCacheLimit = size_t{2} << 30;

class AlignedCpuAllocator final : public Allocator {
 public:
  void* allocate(size_t nbytes) override {
    const size_t size = block_size(nbytes);
    void* pointer = nullptr;
    if (size >= kCachedBlockMinimum) {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = cache_.find(size);
      if (it != cache_.end()) {
        pointer = it->second;
        cache_.erase(it);
        cached_ -= size;
      }
    }
    if (pointer == nullptr) {
      pointer = std::aligned_alloc(kCpuAlignment, size);
      SY_CHECK(pointer != nullptr, "CPU allocation of ", nbytes, " bytes failed");
      allocations_.fetch_add(1);
    }
    size_t now = current_.fetch_add(nbytes) + nbytes;
    size_t peak = peak_.load();
    while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
    }
    return pointer;
  }
  void free(void* pointer, size_t nbytes) override {
    current_.fetch_sub(nbytes);
    const size_t size = block_size(nbytes);
    if (size >= kCachedBlockMinimum) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (cached_ + size <= kCacheLimit) {
        cache_.emplace(size, pointer);
        cached_ += size;
        return;
      }
    }
    std::free(pointer);
  }
  Device device() const override { return Device::CPU(); }

  AllocatorStats Stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return {current_.load(), peak_.load(), cached_, allocations_.load()};
  }
  void ResetPeak() { peak_.store(current_.load()); }
  void EmptyCache() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [size, pointer] : cache_) std::free(pointer);
    cache_.clear();
    cached_ = 0;
  }

 private:
  static size_t block_size(size_t nbytes) {
    size_t rounding = nbytes >= kCachedBlockMinimum ? kCachedBlockRounding : kCpuAlignment;
    return std::max((nbytes + rounding - 1) / rounding * rounding, kCpuAlignment);
  }

  std::atomic<size_t> current_{0};
  std::atomic<size_t> peak_{0};
  std::atomic<size_t> allocations_{0};
  std::mutex mutex_;
  std::multimap<size_t, void*> cache_;  // free large blocks by size
  size_t cached_ = 0;
};

AlignedCpuAllocator& TheCpuAllocator() {
  static AlignedCpuAllocator* allocator = new AlignedCpuAllocator();  // lives for the process
  return *allocator;
}

}  // namespace

Allocator& cpu_allocator() { return TheCpuAllocator(); }
AllocatorStats cpu_allocator_stats() { return TheCpuAllocator().Stats(); }
void reset_cpu_peak_stats() { TheCpuAllocator().ResetPeak(); }
void cpu_empty_cache() { TheCpuAllocator().EmptyCache(); }

Allocator& allocator_for(Device device) {
  if (device.is_cpu()) return cpu_allocator();
#ifdef SY_WITH_CUDA
  return cuda::caching_allocator_for(device.index);
#else
  SY_FAIL("CUDA device ", device.to_string(), " requested but Switchyard was built without CUDA");
#endif
}

}  // namespace sy
