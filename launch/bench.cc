// `switchyard bench ops` and `switchyard bench moe-layer`: forward+backward speed against the
// PyTorch peers in scripts/bench/, medians of repeated runs in one process each (and the
// dispatch to `bench tokenizer` and `bench train-step`, each in its own file).
#include "launch/bench.h"

#include <omp.h>

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
#include "core/autograd/grad_mode.h"
#include "core/ops/ops.h"
#include "launch/bench_peer.h"
#include "moe/dispatch_local.h"
#include "moe/moe_layer.h"

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

// Runs a PyTorch peer script (scripts/bench/<script>) on `cases`; returns name -> median ms.
std::map<std::string, double> time_torch(const std::string& script, const nlohmann::json& cases, int warmup,
                                         int repeats, std::string* note) {
  std::map<std::string, double> result;
  for (const auto& [name, row] : run_torch_peer(script, cases, warmup, repeats, note)) {
    if (row.contains("median_ms")) result[name] = row["median_ms"].get<double>();
  }
  return result;
}

void print_header(const char* what, int warmup, int repeats) {
  std::printf("switchyard bench %s: forward+backward, median of %d runs (after %d warmup), %d threads, "
              "OPENBLAS_CORETYPE=%s\n",
              what, repeats, warmup, omp_get_max_threads(),
              std::getenv("OPENBLAS_CORETYPE") ? std::getenv("OPENBLAS_CORETYPE") : "(OpenBLAS default)");
}

int bench_ops(int warmup, int repeats, bool with_torch, const std::string& filter) {
  std::vector<BenchCase> cases;
  for (const BenchCase& c : ops_cases()) {
    if (filter.empty() || c.name.find(filter) != std::string::npos) cases.push_back(c);
  }
  manual_seed(0);
  print_header("ops", warmup, repeats);
  std::vector<double> ours;
  for (const BenchCase& c : cases) ours.push_back(time_case(c, warmup, repeats));
  std::string note;
  std::map<std::string, double> torch;
  if (with_torch) {
    nlohmann::json specs = nlohmann::json::array();
    for (const BenchCase& c : cases) specs.push_back({{"name", c.name}, {"kind", c.kind}, {"shape", c.shape}});
    torch = time_torch("torch_ops.py", specs, warmup, repeats, &note);
  }
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

// ---- moe-layer ----

// One MoE layer case; the field names are the JSON keys scripts/bench/torch_moe.py reads.
struct MoeCase {
  std::string name;
  int64_t tokens, hidden, experts, top_k, ffn, shared_ffn;  // N C E K F, shared width (0: none)
  bool pre_softmax;  // softmax then top-K (DeepSeek), else top-K logits then softmax (Mixtral)

  nlohmann::json to_json() const {
    return {{"name", name},     {"batch", kBatch},    {"tokens", tokens},         {"hidden", hidden},
            {"experts", experts}, {"top_k", top_k}, {"ffn", ffn}, {"shared_ffn", shared_ffn},
            {"pre_softmax", pre_softmax}};
  }
  static constexpr int64_t kBatch = 4;  // tokens come as (B, T, C) with B = 4
};

std::vector<MoeCase> moe_cases() {
  return {
      {"DeepSeek-style E64 K6 F256", 4096, 512, 64, 6, 256, 0, true},
      {"DeepSeek-style + 2 shared F256", 4096, 512, 64, 6, 256, 2 * 256, true},
      {"Mixtral-style E8 K2 F1024", 4096, 512, 8, 2, 1024, 0, false},
  };
}

MoeConfig moe_config(const MoeCase& c) {
  MoeConfig config;
  config.num_experts = c.experts;
  config.top_k = c.top_k;
  config.expert_ffn_size = c.ffn;
  config.pre_softmax = c.pre_softmax;  // softmax scores, dropless (capacity_factor 0), no aux losses
  if (c.shared_ffn > 0) {
    config.num_shared_experts = 2;
    config.shared_expert_ffn_size = c.shared_ffn / 2;
  }
  return config;
}

// Times `step` (which must leave every leaf with a gradient); median ms.
double time_steps(std::vector<Tensor> leaves, const std::function<void()>& step, int warmup, int repeats) {
  std::vector<double> samples;
  for (int i = 0; i < warmup + repeats; ++i) {
    for (Tensor& leaf : leaves) leaf.set_grad(Tensor());
    auto start = std::chrono::steady_clock::now();
    step();
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    if (i >= warmup) samples.push_back(ms);
  }
  for (const Tensor& leaf : leaves) SY_CHECK(leaf.grad().defined(), "bench: a leaf got no gradient");
  return median(samples);
}

struct MoeTiming {
  double layer_ms = 0;
  double gemm_ms = 0;  // the grouped GEMMs of one forward+backward alone, same shapes and counts
};

MoeTiming time_moe_case(const MoeCase& c, int warmup, int repeats) {
  manual_seed(0);
  MoeLayer layer(moe_config(c), c.hidden, 0.02, 0.02);
  const int64_t T = c.tokens / MoeCase::kBatch;
  Tensor x = randn({MoeCase::kBatch, T, c.hidden}).set_requires_grad(true);
  std::vector<Tensor> leaves = layer.parameters();
  leaves.push_back(x);
  MoeTiming timing;
  timing.layer_ms = time_steps(
      leaves,
      [&] {
        Tensor out = layer.forward(x, nullptr);
        out.backward(Tensor::ones(out.shape(), out.dtype()));
      },
      warmup, repeats);

  // The grouped GEMMs alone, with this routing's rows per expert: forward x w1 and a w2
  // (2 calls), backward dx and dw of each (4 calls).
  std::vector<int64_t> counts;
  {
    NoGradGuard no_grad;
    const RoutingOutput routing = layer.router().forward(x.reshape({c.tokens, c.hidden}));
    counts = plan_dispatch(routing.topk_indices, routing.topk_weights, c.experts, 0.0, DropPolicy::kProbs, false)
                 .tokens_per_expert;
  }
  const int64_t M = c.tokens * c.top_k;
  Tensor rows = randn({M, c.hidden}).set_requires_grad(true);
  Tensor activated = randn({M, c.ffn}).set_requires_grad(true);
  Tensor w1 = randn({c.experts, c.hidden, 2 * c.ffn}).set_requires_grad(true);
  Tensor w2 = randn({c.experts, c.ffn, c.hidden}).set_requires_grad(true);
  Tensor grad_h = randn({M, 2 * c.ffn}), grad_out = randn({M, c.hidden});
  timing.gemm_ms = time_steps(
      {rows, activated, w1, w2},
      [&] {
        grouped_matmul(rows, w1, counts).backward(grad_h);
        grouped_matmul(activated, w2, counts).backward(grad_out);
      },
      warmup, repeats);
  return timing;
}

int bench_moe_layer(int warmup, int repeats, bool with_torch, const std::string& filter) {
  std::vector<MoeCase> cases;
  for (const MoeCase& c : moe_cases()) {
    if (filter.empty() || c.name.find(filter) != std::string::npos) cases.push_back(c);
  }
  print_header("moe-layer", warmup, repeats);
  std::printf("one MoE layer, 4096 tokens, C 512, softmax top-K, dropless; input and all parameters get gradients\n");
  std::vector<MoeTiming> ours;
  for (const MoeCase& c : cases) ours.push_back(time_moe_case(c, warmup, repeats));
  std::string note;
  std::map<std::string, double> torch;
  if (with_torch) {
    nlohmann::json specs = nlohmann::json::array();
    for (const MoeCase& c : cases) specs.push_back(c.to_json());
    torch = time_torch("torch_moe.py", specs, warmup, repeats, &note);
  }
  std::printf("\n| %-32s | %14s | %12s | %13s | %15s | %10s |\n", "layer", "switchyard ms", "pytorch ms",
              "torch / ours", "grouped GEMM ms", "GEMM share");
  std::printf("|%s|%s|%s|%s|%s|%s|\n", std::string(34, '-').c_str(), std::string(16, '-').c_str(),
              std::string(14, '-').c_str(), std::string(15, '-').c_str(), std::string(17, '-').c_str(),
              std::string(12, '-').c_str());
  for (size_t i = 0; i < cases.size(); ++i) {
    auto it = torch.find(cases[i].name);
    const std::string torch_ms = it == torch.end() ? "-" : absl::StrFormat("%.1f", it->second);
    const std::string ratio = it == torch.end() ? "-" : absl::StrFormat("%.2fx", it->second / ours[i].layer_ms);
    std::printf("| %-32s | %14.1f | %12s | %13s | %15.1f | %9.0f%% |\n", cases[i].name.c_str(), ours[i].layer_ms,
                torch_ms.c_str(), ratio.c_str(), ours[i].gemm_ms, 100.0 * ours[i].gemm_ms / ours[i].layer_ms);
  }
  std::printf("\nratio > 1: Switchyard is faster. GEMM share: the 6 grouped GEMMs of one forward+backward "
              "timed alone / the layer. %s\n", note.c_str());
  return 0;
}

}  // namespace

int run_bench(const std::vector<std::string>& args) {
  if (!args.empty() && args[0] == "tokenizer") return run_bench_tokenizer({args.begin() + 1, args.end()});
  if (!args.empty() && args[0] == "train-step") return run_bench_train_step({args.begin() + 1, args.end()});
  if (!args.empty() && args[0] == "dispatcher") return run_bench_dispatcher({args.begin() + 1, args.end()});
  if (args.empty() || (args[0] != "ops" && args[0] != "moe-layer")) {
    std::fprintf(stderr,
                 "usage: switchyard bench ops|moe-layer [--repeats N] [--warmup N] [--filter TEXT] [--no-torch]\n"
                 "       switchyard bench train-step [--config FILE] [--repeats N] [--warmup N] [--no-torch]\n");
    return 2;
  }
  // A layer step takes seconds on a few cores: fewer runs by default there.
  const bool layer = args[0] == "moe-layer";
  int warmup = layer ? 1 : 2, repeats = layer ? 5 : 10;
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
  return layer ? bench_moe_layer(warmup, repeats, with_torch, filter)
               : bench_ops(warmup, repeats, with_torch, filter);
}

}  // namespace sy
