#include "core/storage.h"

namespace sy {

Storage::Storage(size_t nbytes, Allocator& allocator)
    : data_(allocator.allocate(nbytes)), nbytes_(nbytes), allocator_(allocator) {}

Storage::~Storage() { allocator_.free(data_, nbytes_); }

}  // namespace sy
