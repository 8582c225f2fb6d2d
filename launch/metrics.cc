// MetricsWriter: metrics.jsonl, TensorBoard scalars and the console line.
#include "launch/metrics.h"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "launch/tensorboard.h"

namespace sy {
namespace {

enum class ConsoleMode { kLive, kLines, kNone };

double wall_time_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

struct MetricsWriter::State {
  std::FILE* jsonl = nullptr;
  std::unique_ptr<EventFileWriter> events;
  ConsoleMode mode = ConsoleMode::kLines;
  // The live line goes to a terminal: stdout when it is one, else stderr. Permanent lines
  // (print) and plain progress lines always go to stdout, so a redirected stdout keeps them.
  std::FILE* live = stdout;
  std::string live_line;  // what the live line shows now ("" when nothing is drawn)
  bool warned = false;

  // Metrics must not stop training (log() has no status): a failed write is reported once.
  void warn_once(const std::string& message) {
    if (warned) return;
    warned = true;
    std::fprintf(stderr, "\nswitchyard: metrics: %s (further metrics errors are not shown)\n", message.c_str());
  }

  void clear_live_line() {
    if (live_line.empty()) return;
    std::fputs("\r\033[K", live);
    std::fflush(live);
  }
  void draw_live_line() {
    if (live_line.empty()) return;
    std::fprintf(live, "\r%s\033[K", live_line.c_str());
    std::fflush(live);
  }
};

MetricsWriter::MetricsWriter() : state_(std::make_unique<State>()) {}

MetricsWriter::~MetricsWriter() {
  if (state_->mode == ConsoleMode::kLive && !state_->live_line.empty()) {
    std::fputc('\n', state_->live);  // leave the last progress on screen, the cursor below it
    std::fflush(state_->live);
  }
  if (state_->jsonl != nullptr) std::fclose(state_->jsonl);
}

absl::StatusOr<std::unique_ptr<MetricsWriter>> MetricsWriter::open(const std::string& output_dir,
                                                                   const LoggingConfig& config) {
  std::unique_ptr<MetricsWriter> writer(new MetricsWriter());
  State& state = *writer->state_;
  if (config.progress == "none") {
    state.mode = ConsoleMode::kNone;
  } else if (config.progress == "lines") {
    state.mode = ConsoleMode::kLines;
  } else if (config.progress == "auto") {
    if (isatty(fileno(stdout))) {
      state.mode = ConsoleMode::kLive;
      state.live = stdout;
    } else if (isatty(fileno(stderr))) {
      state.mode = ConsoleMode::kLive;
      state.live = stderr;
    }
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("logging.progress must be auto, lines or none, got '", config.progress, "'"));
  }
  if (!config.jsonl && !config.tensorboard) return writer;
  std::error_code error;
  std::filesystem::create_directories(output_dir, error);
  if (error) return absl::PermissionDeniedError(absl::StrCat(output_dir, ": cannot create: ", error.message()));
  if (config.jsonl) {
    const std::string path = (std::filesystem::path(output_dir) / "metrics.jsonl").string();
    state.jsonl = std::fopen(path.c_str(), "a");  // a resumed run continues the file
    if (state.jsonl == nullptr) {
      return absl::PermissionDeniedError(absl::StrCat(path, ": cannot open for appending: ", std::strerror(errno)));
    }
  }
  if (config.tensorboard) {
    absl::StatusOr<std::unique_ptr<EventFileWriter>> events =
        EventFileWriter::open((std::filesystem::path(output_dir) / "tensorboard").string());
    if (!events.ok()) return events.status();
    state.events = std::move(*events);
  }
  return writer;
}

void MetricsWriter::log(int64_t step, const Scalars& scalars) {
  State& state = *state_;
  if (state.jsonl != nullptr) {
    // ordered_json keeps the order the scalars are shown in.
    nlohmann::ordered_json record;
    record["step"] = step;
    for (const auto& [name, value] : scalars) record[name] = value;  // NaN and inf become null
    const std::string line = record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    // Flushed per line: a killed run keeps every line logged so far.
    if (std::fwrite(line.data(), 1, line.size(), state.jsonl) != line.size() || std::fflush(state.jsonl) != 0) {
      state.warn_once(absl::StrCat("metrics.jsonl: write failed: ", std::strerror(errno)));
    }
  }
  if (state.events != nullptr) {
    const double now = wall_time_now();
    absl::Status status;
    for (const auto& [name, value] : scalars) status.Update(state.events->add_scalar(name, step, value, now));
    status.Update(state.events->flush());
    if (!status.ok()) state.warn_once(std::string(status.message()));
  }
}

void MetricsWriter::progress(const std::string& line) {
  State& state = *state_;
  switch (state.mode) {
    case ConsoleMode::kNone:
      return;
    case ConsoleMode::kLines:
      std::fprintf(stdout, "%s\n", line.c_str());
      std::fflush(stdout);
      return;
    case ConsoleMode::kLive:
      state.live_line = line;
      state.draw_live_line();
      return;
  }
}

void MetricsWriter::print(const std::string& line) {
  State& state = *state_;
  const bool shares_terminal = state.mode == ConsoleMode::kLive && state.live == stdout;
  if (shares_terminal) state.clear_live_line();
  std::fprintf(stdout, "%s\n", line.c_str());
  std::fflush(stdout);
  if (shares_terminal) state.draw_live_line();  // the live line stays below the messages
}

void MetricsWriter::flush() {
  if (state_->jsonl != nullptr) std::fflush(state_->jsonl);
  if (state_->events != nullptr) (void)state_->events->flush();
  std::fflush(stdout);
  std::fflush(stderr);
}

}  // namespace sy
