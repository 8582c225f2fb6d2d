// Invariant checks for what only a bug can cause (user errors return absl::Status).
// SY_CHECK(cond, parts...) throws sy::Error with the parts concatenated; shapes print
// through ShapeString.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace sy {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

inline std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("(", absl::StrJoin(shape, ", "), ")");
}

}  // namespace sy

#define SY_CHECK(cond, ...)                                                          \
  do {                                                                               \
    if (!(cond)) [[unlikely]] {                                                      \
      throw ::sy::Error(::absl::StrCat(__FILE__, ":", __LINE__, ": check failed: " #cond \
                                       ": " __VA_OPT__(, ) __VA_ARGS__));            \
    }                                                                                \
  } while (0)

#define SY_FAIL(...) \
  throw ::sy::Error(::absl::StrCat(__FILE__, ":", __LINE__, ": " __VA_OPT__(, ) __VA_ARGS__))
