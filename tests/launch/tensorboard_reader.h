// Runs tests/reference/tensorboard_reader.py (an independent reader of event files, written
// from the format with Python's protobuf runtime) and returns what it read.
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace sy::testing {

struct EventFileContents {
  bool ok = false;          // the reader accepted every record (both CRCs of each)
  std::string output;       // its stdout and stderr
  std::vector<nlohmann::json> records;  // one object per file version or scalar, in file order
};

// Empty when /usr/bin/python3 can import google.protobuf, else why not (the tests skip).
inline std::string protobuf_python_missing() {
  int status = std::system("/usr/bin/python3 -c 'import google.protobuf' >/dev/null 2>&1");
  if (status == 0) return "";
  return "/usr/bin/python3 cannot import google.protobuf (install the Debian package python3-protobuf)";
}

inline EventFileContents read_event_file(const std::string& path) {
  EventFileContents contents;
  const std::string command = std::string("/usr/bin/python3 ") + SY_SOURCE_DIR +
                              "/tests/reference/tensorboard_reader.py '" + path + "' 2>&1";
  std::FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return contents;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) contents.output.append(buffer, n);
  int status = pclose(pipe);
  contents.ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  if (!contents.ok) return contents;
  size_t start = 0;
  while (start < contents.output.size()) {
    size_t end = contents.output.find('\n', start);
    if (end == std::string::npos) end = contents.output.size();
    if (end > start) {
      nlohmann::json record = nlohmann::json::parse(contents.output.substr(start, end - start), nullptr, false);
      if (record.is_discarded()) {
        contents.ok = false;
        return contents;
      }
      contents.records.push_back(std::move(record));
    }
    start = end + 1;
  }
  return contents;
}

}  // namespace sy::testing
