// Files that appear whole or not at all: written under a temporary name next to `path`, then
// renamed over it, so a crash or a full disk never leaves a half-written file where a reader
// (or the previous good version) expects a whole one.
#pragma once

#include <functional>
#include <ostream>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace sy {

// Calls `write` with a binary stream on the temporary file; fails (removing the temporary and
// leaving `path` as it was) when the file cannot be opened, written or renamed.
absl::Status write_file_atomically(const std::string& path, const std::function<void(std::ostream&)>& write);
absl::Status write_file_atomically(const std::string& path, std::string_view contents);

}  // namespace sy
