#include "launch/bench.h"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/ops/ops.h"

#ifndef SY_SOURCE_DIR
#define SY_SOURCE_DIR "."
#endif

namespace sy {
namespace {

// One benchmark case: `kind` and `shape` mean the same thing to both sides
// (scripts/bench/torch_ops.py builds the PyTorch peer from them).
struct BenchCase {
  std::string name;
  std::string kind;
  std::vector<int64_t> shape;
};

std::vector<BenchCase> ops_cases() {
  return {
      {"matmul 512x512x512", "matmul", {1, 512, 512, 512}},
      {"matmul 1024x1024x1024", "matmul", {1, 1024, 1024, 1024}},
      {"matmul 4096x1024 @ 1024x256", "matmul", {1, 4096, 1024, 256}},
      {"bmm 16x(128x64 @ 64x128)", "matmul", {16, 128, 64, 128}},
      {"softmax 4096x1024", "softmax", {4096, 1024}},
      {"rms_norm 8192x1024", "rms_norm", {8192, 1024}},
      {"attention B2 H8 Hkv2 T512 D64", "attention", {2, 8, 2, 512, 64}},
      {"cross_entropy 1024x32000", "cross_entropy", {1024, 32000}},
  };
}

// Leaves and a forward closure for a case, with the same shapes as the PyTorch peer.
std::pair<std::vector<Tensor>, std::function<Tensor()>> make_case(const BenchCase& bench_case) {
  const auto& s = bench_case.shape;
  auto leaf = [](const Shape& shape) { return randn(shape).set_requires_grad(true); };
  if (bench_case.kind == "matmul") {
    Tensor a = s[0] > 1 ? leaf({s[0], s[1], s[2]}) : leaf({s[1], s[2]});
    Tensor b = s[0] > 1 ? leaf({s[0], s[2], s[3]}) : leaf({s[2], s[3]});
    return {{a, b}, [a, b] { return matmul(a, b); }};
  }
  if (bench_case.kind == "softmax") {
    Tensor x = leaf(s);
    return {{x}, [x] { return softmax(x, -1); }};
  }
  if (bench_case.kind == "rms_norm") {
    Tensor x = leaf(s), w = leaf({s.back()});
    return {{x, w}, [x, w] { return rms_norm(x, w, 1e-6); }};
  }
  if (bench_case.kind == "attention") {
    Tensor q = leaf({s[0], s[1], s[3], s[4]}), k = leaf({s[0], s[2], s[3], s[4]}),
           v = leaf({s[0], s[2], s[3], s[4]});
    return {{q, k, v}, [q, k, v] { return scaled_dot_product_attention(q, k, v, true); }};
  }
  if (bench_case.kind == "cross_entropy") {
    Tensor logits = leaf(s);
    Tensor targets = (rand({s[0]}) * static_cast<double>(s[1])).to(DType::kI64);
    return {{logits}, [logits, targets] { return cross_entropy(logits, targets); }};
  }
  SY_FAIL("unknown bench kind ", bench_case.kind);
}

double median(std::vector<double> samples) {
  std::sort(samples.begin(), samples.end());
  size_t n = samples.size();
  return n % 2 ? samples[n / 2] : 0.5 * (samples[n / 2 - 1] + samples[n / 2]);
}

// Median milliseconds of forward + backward (with an all-ones output gradient).
double time_case(const BenchCase& bench_case, int warmup, int repeats) {
  auto [leaves, forward] = make_case(bench_case);
  std::vector<double> samples;
  for (int i = 0; i < warmup + repeats; ++i) {
    for (Tensor& leaf : leaves) leaf.set_grad(Tensor());
    auto start = std::chrono::steady_clock::now();
    Tensor out = forward();
    out.backward(Tensor::ones(out.shape(), out.dtype()));
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    if (i >= warmup) samples.push_back(ms);
  }
  return median(samples);
}

std::string torch_preload() {
  for (const char* path : {"/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
                           "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4"}) {
    if (access(path, R_OK) == 0) return path;
  }
  return "";
}

// Runs the PyTorch peer on the same cases; returns name -> median ms (empty if unavailable).
std::map<std::string, double> time_torch(const std::vector<BenchCase>& cases, int warmup, int repeats,
                                         std::string* note) {
  std::map<std::string, double> result;
  const int threads = omp_get_max_threads();
  nlohmann::json spec = {{"threads", threads}, {"warmup", warmup}, {"repeats", repeats}};
  for (const BenchCase& c : cases) spec["cases"].push_back({{"name", c.name}, {"kind", c.kind}, {"shape", c.shape}});
  char spec_path[] = "/tmp/switchyard-bench-XXXXXX";
  int fd = mkstemp(spec_path);
  if (fd < 0) {
    *note = "could not create a temporary file for the PyTorch peer";
    return result;
  }
  std::string text = spec.dump();
  if (write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size())) *note = "short write";
  close(fd);
  std::string preload = torch_preload();
  const char* coretype = std::getenv("OPENBLAS_CORETYPE");
  std::string command = absl::StrCat(
      "env OMP_NUM_THREADS=", threads, preload.empty() ? "" : " LD_PRELOAD=" + preload,
      coretype ? absl::StrCat(" OPENBLAS_CORETYPE=", coretype) : "", " /usr/bin/python3 ",
      SY_SOURCE_DIR, "/scripts/bench/torch_ops.py < ", spec_path, " 2>&1");
  FILE* pipe = popen(command.c_str(), "r");
  char line[4096];
  while (pipe != nullptr && fgets(line, sizeof line, pipe) != nullptr) {
    nlohmann::json row = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (row.is_discarded()) {
      *note += line;
    } else if (row.contains("median_ms")) {
      result[row["name"].get<std::string>()] = row["median_ms"].get<double>();
    } else if (row.contains("torch")) {
      *note = absl::StrCat("PyTorch ", row["torch"].get<std::string>(), ", ", row["threads"].get<int>(),
                           " threads, preload: ", row["preload"].get<std::string>().empty() ? "none" : "tcmalloc");
    }
  }
  if (pipe != nullptr) pclose(pipe);
  unlink(spec_path);
  return result;
}

int bench_ops(int warmup, int repeats, bool with_torch, const std::string& filter) {
  std::vector<BenchCase> cases;
  for (const BenchCase& c : ops_cases()) {
    if (filter.empty() || c.name.find(filter) != std::string::npos) cases.push_back(c);
  }
  manual_seed(0);
  std::printf("switchyard bench ops: forward+backward, median of %d runs (after %d warmup), %d threads, "
              "OPENBLAS_CORETYPE=%s\n",
              repeats, warmup, omp_get_max_threads(),
              std::getenv("OPENBLAS_CORETYPE") ? std::getenv("OPENBLAS_CORETYPE") : "(OpenBLAS default)");
  std::vector<double> ours;
  for (const BenchCase& c : cases) ours.push_back(time_case(c, warmup, repeats));
  std::string note;
  std::map<std::string, double> torch;
  if (with_torch) torch = time_torch(cases, warmup, repeats, &note);
  std::printf("\n| %-32s | %14s | %12s | %13s |\n", "op", "switchyard ms", "pytorch ms", "torch / ours");
  std::printf("|%s|%s|%s|%s|\n", std::string(34, '-').c_str(), std::string(16, '-').c_str(),
              std::string(14, '-').c_str(), std::string(15, '-').c_str());
  for (size_t i = 0; i < cases.size(); ++i) {
    auto it = torch.find(cases[i].name);
    if (it == torch.end()) {
      std::printf("| %-32s | %14.3f | %12s | %13s |\n", cases[i].name.c_str(), ours[i], "-", "-");
    } else {
      std::printf("| %-32s | %14.3f | %12.3f | %12.2fx |\n", cases[i].name.c_str(), ours[i], it->second,
                  it->second / ours[i]);
    }
  }
  std::printf("\nratio > 1: Switchyard is faster. %s\n", note.c_str());
  return 0;
}

}  // namespace

int run_bench(const std::vector<std::string>& args) {
  if (args.empty() || args[0] != "ops") {
    std::fprintf(stderr, "usage: switchyard bench ops [--repeats N] [--warmup N] [--filter TEXT] [--no-torch]\n");
    return 2;
  }
  int warmup = 2, repeats = 10;
  bool with_torch = true;
  std::string filter;
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& arg = args[i];
    auto value = [&](int* out) {
      if (i + 1 >= args.size() || !absl::SimpleAtoi(args[i + 1], out) || *out < 1) {
        std::fprintf(stderr, "switchyard bench: %s expects a positive integer\n", arg.c_str());
        return false;
      }
      ++i;
      return true;
    };
    if (arg == "--repeats") {
      if (!value(&repeats)) return 2;
    } else if (arg == "--warmup") {
      if (!value(&warmup)) return 2;
    } else if (arg == "--no-torch") {
      with_torch = false;
    } else if (arg == "--filter" && i + 1 < args.size()) {
      filter = args[++i];
    } else {
      std::fprintf(stderr, "switchyard bench: unknown argument '%s'\n", arg.c_str());
      return 2;
    }
  }
  return bench_ops(warmup, repeats, with_torch, filter);
}

}  // namespace sy
