#include "core/io/atomic_file.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"

namespace sy {

absl::Status write_file_atomically(const std::string& path, const std::function<void(std::ostream&)>& write) {
  const std::string temporary = absl::StrCat(path, ".tmp.", getpid());
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    if (!out) return absl::PermissionDeniedError(absl::StrCat(temporary, ": cannot open for writing"));
    write(out);
    out.flush();
    if (!out) {
      out.close();
      std::remove(temporary.c_str());
      return absl::DataLossError(absl::StrCat(temporary, ": write failed (disk full?)"));
    }
  }
  std::error_code error;
  std::filesystem::rename(temporary, path, error);
  if (error) {
    std::remove(temporary.c_str());
    return absl::PermissionDeniedError(absl::StrCat(path, ": cannot rename into place: ", error.message()));
  }
  return absl::OkStatus();
}

absl::Status write_file_atomically(const std::string& path, std::string_view contents) {
  return write_file_atomically(
      path, [contents](std::ostream& out) { out.write(contents.data(), static_cast<std::streamsize>(contents.size())); });
}

}  // namespace sy
