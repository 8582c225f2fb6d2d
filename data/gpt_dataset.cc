// GPT samples over one split of an indexed dataset (Megatron's GPTDataset). Three arrays:
//   document index (epochs * documents): per epoch, the split's documents in a shuffled order;
//   sample index (samples + 1, 2): (position in the document index, token offset) where each
//     sample starts; sample i runs from entry i to entry i + 1 inclusive, seq_length + 1 tokens;
//   shuffle index (samples): the order samples are handed out in.
// Shuffles are Fisher-Yates over Philox draws (core/random.h), so they agree on every platform.
#include "data/gpt_dataset.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/check.h"
#include "core/random.h"

namespace sy {
namespace {

// Bump when the arrays' meaning changes, so old caches are not reused.
constexpr int kIndexFormat = 1;

// Uniform 64-bit draws from one Philox stream (key = seed, subsequence = stream id).
class DrawStream {
 public:
  DrawStream(uint64_t seed, uint64_t stream) : seed_(seed), stream_(stream) {}
  uint64_t next() {
    if (used_ == 2) {
      block_ = philox4x32_10(seed_, counter_++, stream_);
      used_ = 0;
    }
    const uint64_t value = (static_cast<uint64_t>(block_.x[2 * used_ + 1]) << 32) | block_.x[2 * used_];
    ++used_;
    return value;
  }
  // Uniform in [0, bound) by rejection, so no value is favoured.
  uint64_t below(uint64_t bound) {
    const uint64_t limit = std::numeric_limits<uint64_t>::max() - std::numeric_limits<uint64_t>::max() % bound;
    uint64_t value;
    do value = next();
    while (value >= limit);
    return value % bound;
  }

 private:
  uint64_t seed_, stream_, counter_ = 0;
  Philox4 block_{};
  int used_ = 2;
};

void shuffle(std::span<int64_t> values, DrawStream& draws) {
  for (size_t i = values.size(); i > 1; --i) {
    std::swap(values[i - 1], values[draws.below(i)]);
  }
}

// Streams: 0 shuffles the samples, 1 + epoch orders that epoch's documents; the split is in
// the high bits so the splits draw independently.
uint64_t stream_id(Split split, uint64_t stream) { return (static_cast<uint64_t>(split) << 48) | stream; }

// ---- .npy (version 1.0, little-endian int64, C order) ----

// numpy's spelling of a shape: "(N,)" or "(N, 2)".
std::string npy_shape(const std::vector<int64_t>& shape) {
  return shape.size() == 1 ? absl::StrCat("(", shape[0], ",)") : absl::StrCat("(", shape[0], ", ", shape[1], ")");
}

absl::Status write_npy_i64(const std::string& path, const std::vector<int64_t>& values,
                           const std::vector<int64_t>& shape) {
  std::string header = absl::StrCat("{'descr': '<i8', 'fortran_order': False, 'shape': ", npy_shape(shape), ", }");
  header.append((64 - (10 + header.size() + 1) % 64) % 64, ' ');
  header.push_back('\n');
  const std::string temp = absl::StrCat(path, ".tmp.", getpid());
  FILE* file = std::fopen(temp.c_str(), "wb");
  if (file == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(temp, ": cannot create (", std::strerror(errno),
                                                      "); set data.cache_dir to a writable directory"));
  }
  const uint16_t length = static_cast<uint16_t>(header.size());
  bool ok = std::fwrite("\x93NUMPY\x01\x00", 1, 8, file) == 8 && std::fwrite(&length, 1, 2, file) == 2 &&
            std::fwrite(header.data(), 1, header.size(), file) == header.size() &&
            std::fwrite(values.data(), 8, values.size(), file) == values.size();
  ok = std::fflush(file) == 0 && ok;
  ok = std::fclose(file) == 0 && ok;
  if (!ok || std::rename(temp.c_str(), path.c_str()) != 0) {
    std::remove(temp.c_str());
    return absl::InternalError(absl::StrCat(path, ": cannot write (", std::strerror(errno), ")"));
  }
  return absl::OkStatus();
}

// Reads an int64 array written by write_npy_i64 and checks its shape; false if anything differs.
bool read_npy_i64(const std::string& path, const std::vector<int64_t>& shape, std::vector<int64_t>* values) {
  FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) return false;
  char magic[10];
  bool ok = std::fread(magic, 1, 10, file) == 10 && std::memcmp(magic, "\x93NUMPY\x01\x00", 8) == 0;
  std::string header;
  if (ok) {
    uint16_t length;
    std::memcpy(&length, magic + 8, 2);
    header.resize(length);
    ok = std::fread(header.data(), 1, length, file) == length;
  }
  int64_t count = 1;
  for (int64_t d : shape) count *= d;
  ok = ok && header.find("'descr': '<i8'") != std::string::npos &&
       header.find("'fortran_order': False") != std::string::npos &&
       header.find(absl::StrCat("'shape': ", npy_shape(shape))) != std::string::npos;
  if (ok) {
    values->resize(static_cast<size_t>(count));
    ok = std::fread(values->data(), 8, values->size(), file) == values->size() && std::fgetc(file) == EOF;
  }
  std::fclose(file);
  return ok;
}

uint64_t fnv1a(const std::string& text) {
  uint64_t hash = 0xcbf29ce484222325ull;
  for (unsigned char c : text) hash = (hash ^ c) * 0x100000001b3ull;
  return hash;
}

std::string file_stamp(const std::string& path) {
  struct stat info;
  if (stat(path.c_str(), &info) != 0) return "missing";
  return absl::StrCat(info.st_size, "@", info.st_mtim.tv_sec, ".", info.st_mtim.tv_nsec);
}

class GptDataset final : public SampleSource {
 public:
  GptDataset(std::shared_ptr<IndexedDataset> dataset, int64_t seq_length, std::vector<int64_t> document_index,
             std::vector<int64_t> sample_index, std::vector<int64_t> shuffle_index)
      : dataset_(std::move(dataset)),
        seq_length_(seq_length),
        document_index_(std::move(document_index)),
        sample_index_(std::move(sample_index)),
        shuffle_index_(std::move(shuffle_index)) {}

  int64_t size() const override { return static_cast<int64_t>(shuffle_index_.size()); }
  int64_t seq_length() const override { return seq_length_; }

  void sample(int64_t index, std::span<int64_t> out) const override {
    SY_CHECK(index >= 0 && index < size(), "sample ", index, " of ", size());
    SY_CHECK(static_cast<int64_t>(out.size()) == seq_length_ + 1, "sample buffer of ", out.size(),
             " tokens, expected seq_length + 1 = ", seq_length_ + 1);
    const int64_t shuffled = shuffle_index_[index];
    int64_t position = sample_index_[2 * shuffled], offset = sample_index_[2 * shuffled + 1];
    const int64_t last_position = sample_index_[2 * shuffled + 2], last_offset = sample_index_[2 * shuffled + 3];
    size_t written = 0;
    while (position < last_position) {
      const int64_t document = document_index_[position];
      const int64_t count = dataset_->document_length(document) - offset;
      dataset_->read(document, offset, out.subspan(written, count));
      written += count;
      ++position;
      offset = 0;
    }
    dataset_->read(document_index_[position], offset, out.subspan(written, last_offset + 1 - offset));
    SY_CHECK(written + last_offset + 1 - offset == out.size(), "sample ", index, " spans ",
             written + last_offset + 1 - offset, " tokens");
  }

 private:
  std::shared_ptr<IndexedDataset> dataset_;
  int64_t seq_length_;
  std::vector<int64_t> document_index_;
  std::vector<int64_t> sample_index_;  // (samples + 1, 2), flattened
  std::vector<int64_t> shuffle_index_;
};

// Checks arrays read from a cache against the dataset, so a stale or foreign file cannot make
// sample() read out of bounds.
bool consistent(const IndexedDataset& dataset, std::pair<int64_t, int64_t> documents, int64_t seq_length,
                const std::vector<int64_t>& document_index, const std::vector<int64_t>& sample_index,
                const std::vector<int64_t>& shuffle_index) {
  for (int64_t document : document_index) {
    if (document < documents.first || document >= documents.second) return false;
  }
  const int64_t samples = static_cast<int64_t>(shuffle_index.size());
  // Every sample must span exactly seq_length + 1 tokens of the concatenated documents.
  std::vector<int64_t> starts(document_index.size() + 1, 0);
  for (size_t p = 0; p < document_index.size(); ++p) {
    starts[p + 1] = starts[p] + dataset.document_length(document_index[p]);
  }
  auto token_position = [&](int64_t entry, int64_t* out) {
    const int64_t position = sample_index[2 * entry], offset = sample_index[2 * entry + 1];
    if (position < 0 || position >= static_cast<int64_t>(document_index.size()) || offset < 0 ||
        offset >= std::max<int64_t>(starts[position + 1] - starts[position], 1)) {
      return false;
    }
    *out = starts[position] + offset;
    return true;
  };
  int64_t first = 0, last = 0;
  if (!token_position(0, &first)) return false;
  for (int64_t i = 1; i <= samples; ++i, first = last) {
    if (!token_position(i, &last) || last - first != seq_length) return false;
  }
  std::vector<bool> seen(samples, false);
  for (int64_t value : shuffle_index) {
    if (value < 0 || value >= samples || seen[value]) return false;
    seen[value] = true;
  }
  return true;
}

}  // namespace

const char* split_name(Split split) {
  switch (split) {
    case Split::kTrain: return "train";
    case Split::kValid: return "valid";
    case Split::kTest: return "test";
  }
  return "unknown";
}

absl::StatusOr<std::array<std::pair<int64_t, int64_t>, 3>> split_documents(const std::string& split,
                                                                            int64_t num_documents) {
  const char separator = split.find('/') != std::string::npos ? '/' : ',';
  std::vector<std::string> parts = absl::StrSplit(split, separator);
  if (parts.size() > 3) {
    return absl::InvalidArgumentError(absl::StrCat("split \"", split, "\": expected at most 3 weights (train,valid,test)"));
  }
  std::array<double, 3> weights = {0, 0, 0};
  double total = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (!absl::SimpleAtod(absl::StripAsciiWhitespace(parts[i]), &weights[i]) || !std::isfinite(weights[i]) ||
        weights[i] < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("split \"", split, "\": weight \"", parts[i], "\" is not a non-negative number"));
    }
    total += weights[i];
  }
  if (total <= 0) return absl::InvalidArgumentError(absl::StrCat("split \"", split, "\": the weights sum to 0"));
  // Megatron's get_train_valid_test_split_: round each share (half to even, as Python's round),
  // then shift every boundary by the rounding excess so the last one is the document count.
  std::array<int64_t, 4> bounds = {0, 0, 0, 0};
  for (int i = 0; i < 3; ++i) {
    bounds[i + 1] = bounds[i] + static_cast<int64_t>(std::nearbyint(weights[i] / total * static_cast<double>(num_documents)));
  }
  const int64_t excess = bounds[3] - num_documents;
  for (int i = 1; i < 4; ++i) bounds[i] = std::clamp<int64_t>(bounds[i] - excess, bounds[i - 1], num_documents);
  std::array<std::pair<int64_t, int64_t>, 3> ranges;
  for (int i = 0; i < 3; ++i) ranges[i] = {bounds[i], bounds[i + 1]};
  return ranges;
}

absl::StatusOr<std::shared_ptr<SampleSource>> build_gpt_dataset(std::shared_ptr<IndexedDataset> dataset,
                                                                const GptDatasetOptions& options) {
  SY_CHECK(dataset != nullptr, "build_gpt_dataset without a dataset");
  const std::string& prefix = dataset->prefix();
  if (options.seq_length < 1) {
    return absl::InvalidArgumentError(absl::StrCat("seq_length ", options.seq_length, ": expected at least 1"));
  }
  if (options.num_samples < 0) {
    return absl::InvalidArgumentError(absl::StrCat("num_samples ", options.num_samples, ": expected at least 0"));
  }
  auto ranges = split_documents(options.split_weights, dataset->num_documents());
  if (!ranges.ok()) return ranges.status();
  const std::pair<int64_t, int64_t> documents = (*ranges)[static_cast<int>(options.split)];
  const int64_t num_documents = documents.second - documents.first;
  int64_t tokens_per_epoch = 0;
  for (int64_t d = documents.first; d < documents.second; ++d) tokens_per_epoch += dataset->document_length(d);

  // Enough epochs for num_samples samples of seq_length new tokens plus the one they share.
  int64_t epochs = 1;
  if (options.num_samples > 0) {
    if (tokens_per_epoch == 0) {
      return absl::FailedPreconditionError(absl::StrCat(prefix, ": the ", split_name(options.split), " split (",
                                                        options.split_weights, ") has no tokens"));
    }
    const int64_t needed = options.num_samples * options.seq_length + 1;
    epochs = (needed + tokens_per_epoch - 1) / tokens_per_epoch;
  }
  const int64_t total_tokens = epochs * tokens_per_epoch;
  const int64_t samples = total_tokens > 0 ? (total_tokens - 1) / options.seq_length : 0;

  // The cache key: everything the arrays depend on.
  std::error_code error;
  std::filesystem::path absolute = std::filesystem::weakly_canonical(std::filesystem::absolute(prefix), error);
  const std::string description = absl::StrCat(
      "format=", kIndexFormat, ";prefix=", absolute.string(), ";split=", options.split_weights, ";which=",
      split_name(options.split), ";seed=", options.seed, ";seq_length=", options.seq_length,
      ";num_samples=", options.num_samples, ";bin=", file_stamp(prefix + ".bin"), ";idx=", file_stamp(prefix + ".idx"));
  const std::filesystem::path directory =
      options.cache_dir.empty() ? absolute.parent_path() : std::filesystem::path(options.cache_dir);
  const std::string stem = (directory / absl::StrFormat("%s_%s_%016x", absolute.filename().string(),
                                                        split_name(options.split), fnv1a(description)))
                               .string();
  const std::string document_path = stem + "_document_index.npy", sample_path = stem + "_sample_index.npy",
                    shuffle_path = stem + "_shuffle_index.npy";

  std::vector<int64_t> document_index, sample_index, shuffle_index;
  if (read_npy_i64(document_path, {epochs * num_documents}, &document_index) &&
      read_npy_i64(sample_path, {samples + 1, 2}, &sample_index) &&
      read_npy_i64(shuffle_path, {samples}, &shuffle_index) &&
      consistent(*dataset, documents, options.seq_length, document_index, sample_index, shuffle_index)) {
    return std::make_shared<GptDataset>(std::move(dataset), options.seq_length, std::move(document_index),
                                        std::move(sample_index), std::move(shuffle_index));
  }

  document_index.resize(epochs * num_documents);
  for (int64_t epoch = 0; epoch < epochs; ++epoch) {
    std::span<int64_t> order(document_index.data() + epoch * num_documents, num_documents);
    for (int64_t i = 0; i < num_documents; ++i) order[i] = documents.first + i;
    DrawStream draws(options.seed, stream_id(options.split, 1 + epoch));
    shuffle(order, draws);
  }

  // Walk the concatenated documents seq_length tokens at a time; a sample's last token is the
  // next one's first, so each step moves seq_length tokens on.
  sample_index.resize(2 * (samples + 1));
  int64_t position = 0, offset = 0;
  for (int64_t i = 1; i <= samples; ++i) {
    int64_t remaining = options.seq_length;
    while (true) {
      const int64_t left = dataset->document_length(document_index[position]) - offset;
      // The sample ends inside this document when its last token (remaining after the
      // current one) lies there.
      if (remaining < left) {
        offset += remaining;
        break;
      }
      remaining -= left;
      ++position;
      offset = 0;
      SY_CHECK(position < static_cast<int64_t>(document_index.size()), "sample ", i, " of ", samples,
               " runs past ", epochs, " epochs");
    }
    sample_index[2 * i] = position;
    sample_index[2 * i + 1] = offset;
  }

  shuffle_index.resize(samples);
  for (int64_t i = 0; i < samples; ++i) shuffle_index[i] = i;
  DrawStream draws(options.seed, stream_id(options.split, 0));
  shuffle(shuffle_index, draws);

  std::filesystem::create_directories(directory, error);
  if (absl::Status status = write_npy_i64(document_path, document_index, {epochs * num_documents}); !status.ok()) {
    return status;
  }
  if (absl::Status status = write_npy_i64(sample_path, sample_index, {samples + 1, 2}); !status.ok()) return status;
  if (absl::Status status = write_npy_i64(shuffle_path, shuffle_index, {samples}); !status.ok()) return status;
  return std::make_shared<GptDataset>(std::move(dataset), options.seq_length, std::move(document_index),
                                      std::move(sample_index), std::move(shuffle_index));
}

}  // namespace sy
