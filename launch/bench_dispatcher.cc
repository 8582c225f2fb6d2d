// `switchyard bench dispatcher`: one MoE layer's forward + backward under expert parallelism
// (run it under `mpirun -np 2` or `-np 4`; EP = the world), split into permute,
// communication, experts and un-permute by the dispatcher's clocks, for chunks = 1, 2, 4,
// and how much of the communication the chunked overlap hides. Medians over repeats on each
// rank (the chunk counts take turns), averaged over ranks; rank 0 prints the table.
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "core/ops/ops.h"
#include "core/random.h"
#include "launch/bench.h"
#include "launch/bench_peer.h"
#include "moe/dispatcher.h"
#include "moe/moe_layer.h"

namespace sy {
namespace {

struct DispatcherBenchOptions {
  int64_t tokens = 2048;  // N per rank
  int64_t hidden = 256;   // C
  int64_t experts = 8;    // E
  int64_t top_k = 2;      // K
  int64_t ffn = 256;      // F per expert
  int64_t shared_ffn = 0;  // width of one shared expert (0: none)
  std::vector<int64_t> chunks = {1, 2, 4};
  int warmup = 2, repeats = 10;
};

// Medians (ms) of one chunk count: the whole layer and the dispatcher's four parts.
struct LayerTiming {
  double total = 0, permute = 0, communication = 0, experts = 0, unpermute = 0;
};

// One layer per chunk count, from the same seed; the runs interleave the chunk counts (one
// run of each per round) so that load from other processes falls on every row alike.
std::vector<LayerTiming> time_layers(const DispatcherBenchOptions& options, const std::shared_ptr<Communicator>& world) {
  MoeConfig config;
  config.num_experts = options.experts;
  config.top_k = options.top_k;
  config.expert_ffn_size = options.ffn;
  if (options.shared_ffn > 0) {
    config.num_shared_experts = 1;
    config.shared_expert_ffn_size = options.shared_ffn;
  }
  std::vector<std::unique_ptr<MoeLayer>> layers;
  for (int64_t chunks : options.chunks) {
    Generator generator(17);
    layers.push_back(std::make_unique<MoeLayer>(config, options.hidden, 0.02, 0.02, &generator,
                                                MoeParallel{.expert = world, .balance = nullptr, .overlap_chunks = chunks}));
  }
  Generator data(100 + static_cast<uint64_t>(world->rank()));
  const Tensor x0 = randn({1, options.tokens, options.hidden}, DType::kF32, &data);
  const Tensor probe = randn({1, options.tokens, options.hidden}, DType::kF32, &data);
  const size_t rows = layers.size();
  // samples[row][part]: total, permute, communication, experts, unpermute.
  std::vector<std::vector<std::vector<double>>> samples(rows, std::vector<std::vector<double>>(5));
  for (int run = 0; run < options.warmup + options.repeats; ++run) {
    for (size_t row = 0; row < rows; ++row) {
      MoeLayer& layer = *layers[row];
      DispatchTimings timings;
      layer.set_dispatch_timings(&timings);
      layer.zero_grad();
      Tensor x = x0.clone().set_requires_grad(true);
      world->barrier();
      const auto start = std::chrono::steady_clock::now();
      sum(layer.forward(x, nullptr) * probe).backward();
      const double elapsed =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
      layer.set_dispatch_timings(nullptr);
      if (run < options.warmup) continue;
      const double parts[5] = {elapsed, timings.permute, timings.communication, timings.experts, timings.unpermute};
      for (int part = 0; part < 5; ++part) samples[row][part].push_back(parts[part]);
    }
  }
  // This rank's medians, then their mean over ranks.
  std::vector<double> medians;
  for (const auto& row : samples) {
    for (const auto& part : row) medians.push_back(median(part));
  }
  Tensor reduced = Tensor::from_vector(medians, {static_cast<int64_t>(medians.size())}, DType::kF64);
  world->all_reduce(reduced, ReduceOp::kAvg);
  const std::vector<double> m = reduced.to_vector<double>();
  std::vector<LayerTiming> timings;
  for (size_t row = 0; row < rows; ++row) {
    const double* t = &m[row * 5];
    timings.push_back({t[0], t[1], t[2], t[3], t[4]});
  }
  return timings;
}

bool parse_args(const std::vector<std::string>& args, DispatcherBenchOptions* options) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (i + 1 >= args.size()) {
      std::fprintf(stderr, "switchyard bench dispatcher: %s needs a value\n", arg.c_str());
      return false;
    }
    const std::string& value = args[++i];
    int64_t number = 0;
    if (arg == "--chunks") {
      options->chunks.clear();
      for (absl::string_view part : absl::StrSplit(value, ',')) {
        if (!absl::SimpleAtoi(part, &number) || number < 1) {
          std::fprintf(stderr, "switchyard bench dispatcher: --chunks expects positive integers, got '%s'\n",
                       value.c_str());
          return false;
        }
        options->chunks.push_back(number);
      }
      continue;
    }
    const bool zero_allowed = arg == "--shared-ffn";
    if (!absl::SimpleAtoi(value, &number) || number < (zero_allowed ? 0 : 1)) {
      std::fprintf(stderr, "switchyard bench dispatcher: %s expects a %s integer, got '%s'\n", arg.c_str(),
                   zero_allowed ? "non-negative" : "positive", value.c_str());
      return false;
    }
    if (arg == "--tokens") options->tokens = number;
    else if (arg == "--hidden") options->hidden = number;
    else if (arg == "--experts") options->experts = number;
    else if (arg == "--top-k") options->top_k = number;
    else if (arg == "--ffn") options->ffn = number;
    else if (arg == "--shared-ffn") options->shared_ffn = number;
    else if (arg == "--warmup") options->warmup = static_cast<int>(number);
    else if (arg == "--repeats") options->repeats = static_cast<int>(number);
    else {
      std::fprintf(stderr,
                   "switchyard bench dispatcher: unknown argument '%s' (--tokens --hidden --experts --top-k --ffn "
                   "--shared-ffn --chunks --warmup --repeats)\n",
                   arg.c_str());
      return false;
    }
  }
  return true;
}

}  // namespace

int run_bench_dispatcher(const std::vector<std::string>& args) {
  DispatcherBenchOptions options;
  if (!parse_args(args, &options)) return 2;
  if (!distributed_initialized()) init_distributed(nullptr, nullptr);  // main() finalizes
  const std::shared_ptr<Communicator> world = world_communicator();
  if (options.experts % world->size() != 0) {
    if (world->rank() == 0) {
      std::fprintf(stderr, "switchyard bench dispatcher: --experts %lld is not divisible by the %d ranks\n",
                   static_cast<long long>(options.experts), world->size());
    }
    return 2;
  }
  const std::vector<LayerTiming> timings = time_layers(options, world);
  if (world->rank() != 0) return 0;

  std::printf("MoE layer forward+backward under EP = %d ranks: N = %lld tokens per rank, C = %lld, E = %lld, K = %lld, "
              "F = %lld, shared FFN %lld; medians of %d runs per rank, averaged over ranks (ms)\n",
              world->size(), static_cast<long long>(options.tokens), static_cast<long long>(options.hidden),
              static_cast<long long>(options.experts), static_cast<long long>(options.top_k),
              static_cast<long long>(options.ffn), static_cast<long long>(options.shared_ffn), options.repeats);
  std::printf("%-7s %9s %9s %9s %9s %10s %9s %8s\n", "chunks", "layer", "permute", "comm", "experts", "unpermute",
              "other", "hidden");
  const double baseline = timings.front().communication;
  for (size_t i = 0; i < timings.size(); ++i) {
    const LayerTiming& t = timings[i];
    const double other = t.total - t.permute - t.communication - t.experts - t.unpermute;
    const double hidden = baseline > 0 ? 1.0 - t.communication / baseline : 0.0;
    std::printf("%-7lld %9.2f %9.2f %9.2f %9.2f %10.2f %9.2f %7.0f%%\n", static_cast<long long>(options.chunks[i]),
                t.total, t.permute, t.communication, t.experts, t.unpermute, other, 100.0 * hidden);
  }
  std::printf(
      "comm: time the rank is blocked in the exchanges (launching and waiting for the counts and token "
      "all-to-alls, forward and backward), i.e. the exposed communication. hidden = 1 - comm(chunks) / "
      "comm(chunks = %lld): the share of the first row's exposed communication that the overlap hides. other: "
      "router, shared experts, losses and autograd bookkeeping.\n",
      static_cast<long long>(options.chunks.front()));
  return 0;
}

}  // namespace sy
