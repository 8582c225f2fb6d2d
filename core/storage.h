// Storage: a reference-counted block of device memory that tensors view. It carries the
// version counter that autograd uses to detect in-place changes to saved tensors; every
// view of the storage shares it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/allocator.h"

namespace sy {

class Storage {
 public:
  Storage(size_t nbytes, Allocator& allocator);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return allocator_.device(); }

  uint64_t version() const { return version_; }
  void BumpVersion() { ++version_; }

 private:
  void* data_;
  size_t nbytes_;
  Allocator& allocator_;
  uint64_t version_ = 0;
};

}  // namespace sy
