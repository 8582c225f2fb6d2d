#include "core/allocator.h"

#include <atomic>
#include <cstdlib>

#include "core/check.h"

#ifdef SY_WITH_CUDA
#include "core/cuda/cuda_allocator.h"
#endif

namespace sy {
namespace {

constexpr size_t kCpuAlignment = 64;

class AlignedCpuAllocator final : public Allocator {
 public:
  void* allocate(size_t nbytes) override {
    size_t rounded = (nbytes + kCpuAlignment - 1) / kCpuAlignment * kCpuAlignment;
    if (rounded == 0) rounded = kCpuAlignment;
    void* pointer = std::aligned_alloc(kCpuAlignment, rounded);
    SY_CHECK(pointer != nullptr, "CPU allocation of ", nbytes, " bytes failed");
    size_t now = current_.fetch_add(nbytes) + nbytes;
    size_t peak = peak_.load();
    while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
    }
    allocations_.fetch_add(1);
    return pointer;
  }
  void free(void* pointer, size_t nbytes) override {
    std::free(pointer);
    current_.fetch_sub(nbytes);
  }
  Device device() const override { return Device::CPU(); }

  AllocatorStats Stats() const {
    return {current_.load(), peak_.load(), 0, allocations_.load()};
  }
  void ResetPeak() { peak_.store(current_.load()); }

 private:
  std::atomic<size_t> current_{0};
  std::atomic<size_t> peak_{0};
  std::atomic<size_t> allocations_{0};
};

AlignedCpuAllocator& TheCpuAllocator() {
  static AlignedCpuAllocator* allocator = new AlignedCpuAllocator();  // lives for the process
  return *allocator;
}

}  // namespace

Allocator& cpu_allocator() { return TheCpuAllocator(); }
AllocatorStats cpu_allocator_stats() { return TheCpuAllocator().Stats(); }
void reset_cpu_peak_stats() { TheCpuAllocator().ResetPeak(); }

Allocator& allocator_for(Device device) {
  if (device.is_cpu()) return cpu_allocator();
#ifdef SY_WITH_CUDA
  return cuda::caching_allocator_for(device.index);
#else
  SY_FAIL("CUDA device ", device.to_string(), " requested but Switchyard was built without CUDA");
#endif
}

}  // namespace sy
