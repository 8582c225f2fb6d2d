// The caching device allocator. A block is cached on the stream it was allocated for, so a
// block freed while kernels that use it are still queued is only reused by work queued
// after them on the same stream. Blocks are not split; a cached block serves a request of
// at least half its size. When cudaMalloc fails the cache is emptied and the call retried.
#include "core/cuda/cuda_allocator.h"

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/cuda/runtime.h"
#include "core/device.h"

namespace sy::cuda {

size_t caching_allocator_round_size(size_t nbytes) {
  constexpr size_t kSmallRound = 512, kLargeRound = size_t{2} << 20, kLargeFrom = size_t{1} << 20;
  size_t round = nbytes < kLargeFrom ? kSmallRound : kLargeRound;
  return (std::max<size_t>(nbytes, 1) + round - 1) / round * round;
}

namespace {

struct Block {
  size_t size = 0;  // rounded
  cudaStream_t stream = nullptr;
};

class DeviceCachingAllocator final : public CachingAllocator {
 public:
  explicit DeviceCachingAllocator(int device) : device_(device) {}

  void* allocate(size_t nbytes) override {
    if (nbytes == 0) return nullptr;
    const size_t size = caching_allocator_round_size(nbytes);
    cudaStream_t stream = current_stream(device_);
    std::lock_guard<std::mutex> lock(mutex_);
    void* pointer = take_cached(stream, size);
    if (pointer == nullptr) pointer = allocate_new(size, nbytes);
    in_use_[pointer] = {size, stream};
    current_bytes_ += size;
    peak_bytes_ = std::max(peak_bytes_, current_bytes_);
    return pointer;
  }

  void free(void* pointer, size_t /*nbytes*/) override {
    if (pointer == nullptr) return;
    std::lock_guard<std::mutex> lock(mutex_);
    auto found = in_use_.find(pointer);
    SY_CHECK(found != in_use_.end(), "CUDA allocator: free of a pointer it did not allocate");
    Block block = found->second;
    in_use_.erase(found);
    current_bytes_ -= block.size;
    cached_bytes_ += block.size;
    free_lists_[block.stream].emplace(block.size, pointer);
  }

  Device device() const override { return Device::CUDA(device_); }

  AllocatorStats stats() const override {
    std::lock_guard<std::mutex> lock(mutex_);
    return {current_bytes_, peak_bytes_, cached_bytes_, allocations_};
  }

  void reset_peak() override {
    std::lock_guard<std::mutex> lock(mutex_);
    peak_bytes_ = current_bytes_;
  }

  void empty_cache() override {
    std::lock_guard<std::mutex> lock(mutex_);
    release_cached();
  }

 private:
  // The smallest cached block on `stream` that fits `size` without wasting more than half.
  void* take_cached(cudaStream_t stream, size_t size) {
    auto list = free_lists_.find(stream);
    if (list == free_lists_.end()) return nullptr;
    auto fit = list->second.lower_bound(size);
    if (fit == list->second.end() || fit->first > 2 * size) return nullptr;
    void* pointer = fit->second;
    cached_bytes_ -= fit->first;
    list->second.erase(fit);
    return pointer;
  }

  void* allocate_new(size_t size, size_t requested) {
    DeviceGuard guard(device_);
    void* pointer = nullptr;
    cudaError_t status = cudaMalloc(&pointer, size);
    if (status == cudaErrorMemoryAllocation) {
      cudaGetLastError();  // clear it, free what we cache, and try once more
      release_cached();
      status = cudaMalloc(&pointer, size);
    }
    if (status != cudaSuccess) {
      cudaGetLastError();
      throw Error(absl::StrCat("CUDA out of memory on cuda:", device_, ": allocating ", requested,
                               " bytes (", size, " rounded) with ", current_bytes_,
                               " bytes in use: ", cudaGetErrorString(status)));
    }
    ++allocations_;
    return pointer;
  }

  // Frees every cached block once the device is done with the work that used them.
  void release_cached() {
    if (cached_bytes_ == 0) return;
    DeviceGuard guard(device_);
    SY_CUDA_CHECK(cudaDeviceSynchronize());
    for (auto& [stream, blocks] : free_lists_) {
      for (auto& [size, pointer] : blocks) SY_CUDA_CHECK(cudaFree(pointer));
      blocks.clear();
    }
    cached_bytes_ = 0;
  }

  const int device_;
  mutable std::mutex mutex_;
  std::unordered_map<void*, Block> in_use_;
  std::unordered_map<cudaStream_t, std::multimap<size_t, void*>> free_lists_;
  size_t current_bytes_ = 0;
  size_t peak_bytes_ = 0;
  size_t cached_bytes_ = 0;
  size_t allocations_ = 0;
};

}  // namespace

CachingAllocator& caching_allocator_for(int device) {
  // One per visible device, made once; they live for the process, since tensors freed during
  // static destruction still return their blocks.
  static const auto* allocators = [] {
    auto* made = new std::vector<std::unique_ptr<DeviceCachingAllocator>>();
    for (int d = 0; d < cuda_device_count(); ++d) made->push_back(std::make_unique<DeviceCachingAllocator>(d));
    return made;
  }();
  const int count = static_cast<int>(allocators->size());
  SY_CHECK(device >= 0 && device < count, "CUDA device cuda:", device, " requested but ", count,
           " CUDA devices are visible");
  return *(*allocators)[device];
}

}  // namespace sy::cuda
