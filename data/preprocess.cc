// Text -> indexed dataset: documents are read one at a time, tokenized a chunk at a time on
// every core (so memory holds one chunk, not the corpus), and written in input order.
#include "data/preprocess.h"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "data/indexed_dataset.h"

namespace sy {
namespace {

// A chunk is tokenized in parallel once it holds this much text or this many documents.
constexpr size_t kChunkBytes = 1 << 20;
constexpr size_t kChunkDocuments = 4096;

bool is_json_lines(const std::string& path) {
  return absl::EndsWith(path, ".jsonl") || absl::EndsWith(path, ".json");
}

bool is_blank(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](unsigned char c) { return absl::ascii_isspace(c); });
}

// One input file's documents, one at a time. Plain text: the lines between separator lines,
// each kept with its newline. JSON lines: the string under `json_key` of each line's object.
// Blank documents are skipped in both.
class DocumentReader {
 public:
  absl::Status open(const std::string& path, const PreprocessOptions& options) {
    path_ = path;
    json_ = is_json_lines(path);
    separator_ = options.separator;
    json_key_ = options.json_key;
    std::error_code error;
    if (!std::filesystem::is_regular_file(path, error)) {
      return absl::NotFoundError(absl::StrCat(path, ": no such input file"));
    }
    in_.open(path, std::ios::binary);
    if (!in_) return absl::NotFoundError(absl::StrCat(path, ": cannot open for reading"));
    return absl::OkStatus();
  }

  // The next document into `text`; false at the end of the file.
  absl::StatusOr<bool> next(std::string* text) {
    text->clear();
    std::string line;
    while (std::getline(in_, line)) {
      ++line_number_;
      std::string_view content = line;
      if (content.ends_with('\r')) content.remove_suffix(1);
      if (json_) {
        if (is_blank(content)) continue;
        nlohmann::json object = nlohmann::json::parse(content, nullptr, /*allow_exceptions=*/false);
        if (object.is_discarded() || !object.is_object()) {
          return absl::InvalidArgumentError(absl::StrCat(path_, ":", line_number_, ": not a JSON object"));
        }
        auto field = object.find(json_key_);
        if (field == object.end() || !field->is_string()) {
          return absl::InvalidArgumentError(
              absl::StrCat(path_, ":", line_number_, ": expected a string field \"", json_key_, "\""));
        }
        *text = field->get<std::string>();
        if (!is_blank(*text)) return true;
        continue;
      }
      const bool ends_document = separator_.empty() ? is_blank(content) : content == separator_;
      if (!ends_document) {
        absl::StrAppend(text, line, "\n");
      } else if (!is_blank(*text)) {
        return true;
      } else {
        text->clear();
      }
    }
    if (in_.bad()) return absl::DataLossError(absl::StrCat(path_, ": read error after line ", line_number_));
    return !is_blank(*text);
  }

  int64_t position() {
    const auto at = in_.tellg();
    return at < 0 ? 0 : static_cast<int64_t>(at);
  }

 private:
  std::string path_;
  bool json_ = false;
  std::string separator_, json_key_;
  std::ifstream in_;
  int64_t line_number_ = 0;
};

// "[#####.....]  45%  12.3/27.0 MB  3456 docs  1.2 MB/s" on stderr, at most ten times a second.
class ProgressBar {
 public:
  ProgressBar(bool enabled, int64_t total_bytes)
      : enabled_(enabled && isatty(STDERR_FILENO)), total_bytes_(std::max<int64_t>(total_bytes, 1)) {}

  void update(int64_t bytes, int64_t documents, double seconds, bool last = false) {
    if (!enabled_ || (!last && seconds - shown_at_ < 0.1)) return;
    shown_at_ = seconds;
    const double fraction = std::min(1.0, static_cast<double>(bytes) / static_cast<double>(total_bytes_));
    const int width = 30, filled = static_cast<int>(fraction * width);
    std::fprintf(stderr, "\r[%s%s] %3d%%  %.1f/%.1f MB  %lld docs  %.1f MB/s ", std::string(filled, '#').c_str(),
                 std::string(width - filled, '.').c_str(), static_cast<int>(fraction * 100), bytes / 1e6,
                 total_bytes_ / 1e6, static_cast<long long>(documents), seconds > 0 ? bytes / 1e6 / seconds : 0.0);
    if (last) std::fprintf(stderr, "\n");
    std::fflush(stderr);
  }

 private:
  bool enabled_;
  int64_t total_bytes_;
  double shown_at_ = -1;
};

}  // namespace

absl::StatusOr<std::vector<std::string>> read_documents(const std::string& path, const PreprocessOptions& options) {
  DocumentReader reader;
  if (absl::Status status = reader.open(path, options); !status.ok()) return status;
  std::vector<std::string> documents;
  std::string text;
  while (true) {
    absl::StatusOr<bool> more = reader.next(&text);
    if (!more.ok()) return more.status();
    if (!*more) break;
    documents.push_back(std::move(text));
  }
  return documents;
}

absl::StatusOr<PreprocessReport> preprocess(const Tokenizer& tokenizer, const PreprocessOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  if (options.inputs.empty()) return absl::InvalidArgumentError("preprocess: no input files");
  if (options.output_prefix.empty()) return absl::InvalidArgumentError("preprocess: no output prefix");
  // Every input is checked before anything is written.
  int64_t total_bytes = 0;
  for (const std::string& input : options.inputs) {
    DocumentReader reader;
    if (absl::Status status = reader.open(input, options); !status.ok()) return status;
    std::error_code error;
    total_bytes += static_cast<int64_t>(std::filesystem::file_size(input, error));
  }
  const std::filesystem::path parent = std::filesystem::path(options.output_prefix).parent_path();
  std::error_code error;
  if (!parent.empty() && !std::filesystem::is_directory(parent, error) &&
      !std::filesystem::create_directories(parent, error)) {
    return absl::FailedPreconditionError(
        absl::StrCat(parent.string(), ": cannot create the output directory (", error.message(), ")"));
  }
  auto writer = IndexedDatasetWriter::create(options.output_prefix, tokenizer.vocab_size());
  if (!writer.ok()) return writer.status();

  const int threads = options.threads > 0 ? options.threads : omp_get_max_threads();
  const int32_t end_of_text = tokenizer.end_of_text();
  PreprocessReport report;
  ProgressBar progress(options.progress, total_bytes);
  int64_t finished_files_bytes = 0;
  std::vector<std::string> chunk;
  std::vector<std::vector<int32_t>> tokens;
  size_t chunk_bytes = 0;

  // Tokenizes `chunk` on every thread and appends it to the dataset in order.
  auto flush = [&]() -> absl::Status {
    tokens.assign(chunk.size(), {});
    std::exception_ptr failure;
#pragma omp parallel for schedule(dynamic, 16) num_threads(threads)
    for (int64_t i = 0; i < static_cast<int64_t>(chunk.size()); ++i) {
      try {
        tokens[i] = tokenizer.encode(chunk[i]);
        tokens[i].push_back(end_of_text);
      } catch (...) {
#pragma omp critical(sy_preprocess_failure)
        failure = std::current_exception();
      }
    }
    if (failure) std::rethrow_exception(failure);
    for (size_t i = 0; i < chunk.size(); ++i) {
      if (absl::Status status = (*writer)->add_document(tokens[i]); !status.ok()) return status;
      report.tokens += static_cast<int64_t>(tokens[i].size());
    }
    report.documents += static_cast<int64_t>(chunk.size());
    chunk.clear();
    chunk_bytes = 0;
    return absl::OkStatus();
  };

  for (const std::string& input : options.inputs) {
    DocumentReader reader;
    if (absl::Status status = reader.open(input, options); !status.ok()) return status;
    std::string text;
    while (true) {
      absl::StatusOr<bool> more = reader.next(&text);
      if (!more.ok()) return more.status();
      if (!*more) break;
      report.bytes += static_cast<int64_t>(text.size());
      chunk_bytes += text.size();
      chunk.push_back(std::move(text));
      if (chunk_bytes >= kChunkBytes || chunk.size() >= kChunkDocuments) {
        if (absl::Status status = flush(); !status.ok()) return status;
        progress.update(finished_files_bytes + reader.position(), report.documents, elapsed());
      }
    }
    std::error_code size_error;
    finished_files_bytes += static_cast<int64_t>(std::filesystem::file_size(input, size_error));
  }
  if (absl::Status status = flush(); !status.ok()) return status;
  if (absl::Status status = (*writer)->finish(); !status.ok()) return status;
  report.seconds = elapsed();
  progress.update(total_bytes, report.documents, report.seconds, /*last=*/true);
  return report;
}

}  // namespace sy
