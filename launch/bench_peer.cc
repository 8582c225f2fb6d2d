// Medians and the PyTorch peer launch shared by the bench commands.
#include "launch/bench_peer.h"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

#ifndef SY_SOURCE_DIR
#define SY_SOURCE_DIR "."
#endif

namespace sy {
namespace {

// The first readable path of `candidates` (one per Debian architecture), or "".
std::string first_present(std::initializer_list<const char*> candidates) {
  for (const char* path : candidates) {
    if (access(path, R_OK) == 0) return path;
  }
  return "";
}

// One line of the peer's output, however long.
bool read_line(FILE* pipe, std::string* line) {
  line->clear();
  char chunk[4096];
  while (fgets(chunk, sizeof chunk, pipe) != nullptr) {
    line->append(chunk);
    if (line->back() == '\n') return true;
  }
  return !line->empty();
}

}  // namespace

double median(std::vector<double> samples) {
  std::sort(samples.begin(), samples.end());
  size_t n = samples.size();
  return n % 2 ? samples[n / 2] : 0.5 * (samples[n / 2 - 1] + samples[n / 2]);
}

std::map<std::string, nlohmann::json> run_torch_peer(const std::string& script, const nlohmann::json& cases,
                                                     int warmup, int repeats, std::string* note) {
  std::map<std::string, nlohmann::json> result;
  const int threads = omp_get_max_threads();
  nlohmann::json spec = {{"threads", threads}, {"warmup", warmup}, {"repeats", repeats}, {"cases", cases}};
  char spec_path[] = "/tmp/switchyard-bench-XXXXXX";
  int fd = mkstemp(spec_path);
  if (fd < 0) {
    *note = "could not create a temporary file for the PyTorch peer";
    return result;
  }
  std::string text = spec.dump();
  if (write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size())) *note = "short write";
  close(fd);
  // PyTorch links the system libblas.so.3, OpenBLAS's pthread build by default on Debian; its
  // OpenMP build shares PyTorch's OpenMP threads instead of starting a second pool of its own.
  const std::string preload = first_present({"/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
                                             "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4"});
  const std::string openblas_openmp =
      first_present({"/usr/lib/x86_64-linux-gnu/openblas-openmp", "/usr/lib/aarch64-linux-gnu/openblas-openmp"});
  const char* library_path = std::getenv("LD_LIBRARY_PATH");
  const char* coretype = std::getenv("OPENBLAS_CORETYPE");
  std::string command = absl::StrCat(
      "env OMP_NUM_THREADS=", threads, preload.empty() ? "" : " LD_PRELOAD=" + preload,
      openblas_openmp.empty()
          ? ""
          : absl::StrCat(" LD_LIBRARY_PATH=", openblas_openmp, library_path ? absl::StrCat(":", library_path) : ""),
      coretype ? absl::StrCat(" OPENBLAS_CORETYPE=", coretype) : "", " /usr/bin/python3 ", SY_SOURCE_DIR,
      "/scripts/bench/", script, " < ", spec_path, " 2>&1");
  FILE* pipe = popen(command.c_str(), "r");
  std::string line;
  while (pipe != nullptr && read_line(pipe, &line)) {
    nlohmann::json row = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (row.is_discarded() || !row.is_object()) {
      *note += line;
    } else if (row.contains("name")) {
      result[row["name"].get<std::string>()] = row;
    } else if (row.contains("torch")) {
      const std::string blas = row.value("blas", "");
      *note = absl::StrCat("PyTorch ", row["torch"].get<std::string>(), ", ", row["threads"].get<int>(),
                           " threads, preload: ", row["preload"].get<std::string>().empty() ? "none" : "tcmalloc",
                           ", OpenBLAS: ",
                           absl::StrContains(blas, "openmp")    ? "openmp"
                           : absl::StrContains(blas, "pthread") ? "pthread"
                           : blas.empty()                       ? "not loaded"
                                                                : blas);
    }
  }
  if (pipe != nullptr) pclose(pipe);
  unlink(spec_path);
  return result;
}

}  // namespace sy
