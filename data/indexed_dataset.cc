// Megatron's MMIDIDX version 1 format: the writer streams tokens to prefix.bin.tmp and writes
// the index at finish(); the reader maps both files and checks every size before trusting them.
//
// prefix.idx, little-endian:
//   "MMIDIDX\0\0"  u64 version (1)  u8 dtype code  u64 sequence count S  u64 entry count (D + 1)
//   i32 lengths[S]  i64 byte pointers[S]  i64 document indices[D + 1] (0, ..., S)
// prefix.bin: the tokens of every sequence back to back in the dtype of the code.
// Switchyard writes one sequence per document; the reader hands out sequences as documents,
// as Megatron's GPTDataset does.
#include "data/indexed_dataset.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>

#include "absl/strings/str_cat.h"
#include "core/check.h"

namespace sy {

static_assert(std::endian::native == std::endian::little, "the indexed dataset format is little-endian");

namespace {

constexpr char kMagic[9] = {'M', 'M', 'I', 'D', 'I', 'D', 'X', '\0', '\0'};
constexpr uint64_t kVersion = 1;
constexpr size_t kHeaderBytes = sizeof kMagic + 8 + 1 + 8 + 8;

// Bytes per token of an integer dtype code; 0 for codes that are not integer token types.
size_t token_bytes(int code) {
  switch (code) {
    case 1: case 2: return 1;  // u8, i8
    case 3: case 8: return 2;  // i16, u16
    case 4: return 4;          // i32
    case 5: return 8;          // i64
    default: return 0;
  }
}

std::string errno_text() { return std::strerror(errno); }

// A read-only memory map of a whole file (nothing mapped for an empty file).
struct MappedFile {
  const uint8_t* data = nullptr;
  size_t size = 0;

  absl::Status open(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return absl::NotFoundError(absl::StrCat(path, ": cannot open (", errno_text(), ")"));
    struct stat info;
    if (fstat(fd, &info) != 0) {
      ::close(fd);
      return absl::InternalError(absl::StrCat(path, ": cannot stat (", errno_text(), ")"));
    }
    size = static_cast<size_t>(info.st_size);
    if (size > 0) {
      void* mapped = mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
      if (mapped == MAP_FAILED) {
        ::close(fd);
        return absl::InternalError(absl::StrCat(path, ": cannot map (", errno_text(), ")"));
      }
      data = static_cast<const uint8_t*>(mapped);
    }
    ::close(fd);
    return absl::OkStatus();
  }
  ~MappedFile() {
    if (data != nullptr) munmap(const_cast<uint8_t*>(data), size);
  }
};

template <typename T>
T read_scalar(const uint8_t* at) {
  T value;
  std::memcpy(&value, at, sizeof value);
  return value;
}

bool write_all(FILE* file, const void* data, size_t bytes) {
  return bytes == 0 || std::fwrite(data, 1, bytes, file) == bytes;
}

}  // namespace

int indexed_dtype_code_for_vocab(int64_t vocab_size) { return vocab_size <= 65536 ? 8 : 4; }

// ---- writer ----

struct IndexedDatasetWriter::State {
  std::string prefix;
  int64_t vocab_size = 0;
  int dtype_code = 0;
  FILE* bin = nullptr;
  std::vector<int32_t> lengths;
  std::vector<uint8_t> buffer;  // one document in the token dtype
  bool finished = false;

  std::string bin_path() const { return prefix + ".bin"; }
  std::string idx_path() const { return prefix + ".idx"; }
  std::string bin_temp() const { return prefix + ".bin.tmp"; }
  std::string idx_temp() const { return prefix + ".idx.tmp"; }
};

absl::StatusOr<std::unique_ptr<IndexedDatasetWriter>> IndexedDatasetWriter::create(const std::string& prefix,
                                                                                    int64_t vocab_size) {
  if (vocab_size <= 0 || vocab_size > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(absl::StrCat(prefix, ": vocabulary size ", vocab_size,
                                                   " is outside [1, 2^31 - 1]"));
  }
  std::unique_ptr<IndexedDatasetWriter> writer(new IndexedDatasetWriter());
  writer->state_ = std::make_unique<State>();
  State& state = *writer->state_;
  state.prefix = prefix;
  state.vocab_size = vocab_size;
  state.dtype_code = indexed_dtype_code_for_vocab(vocab_size);
  state.bin = std::fopen(state.bin_temp().c_str(), "wb");
  if (state.bin == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(state.bin_temp(), ": cannot create (", errno_text(), ")"));
  }
  return writer;
}

absl::Status IndexedDatasetWriter::add_document(std::span<const int32_t> tokens) {
  State& state = *state_;
  SY_CHECK(!state.finished, "add_document after finish() on ", state.prefix);
  if (tokens.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    return absl::InvalidArgumentError(absl::StrCat(state.prefix, ": a document of ", tokens.size(),
                                                   " tokens is longer than the format's 2^31 - 1"));
  }
  const size_t bytes = token_bytes(state.dtype_code);
  state.buffer.resize(tokens.size() * bytes);
  for (size_t i = 0; i < tokens.size(); ++i) {
    const int32_t token = tokens[i];
    if (token < 0 || token >= state.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(state.prefix, ": token ", token, " of document ",
                                                     state.lengths.size(), " is outside the vocabulary [0, ",
                                                     state.vocab_size, ")"));
    }
    if (bytes == 2) {
      const uint16_t narrow = static_cast<uint16_t>(token);
      std::memcpy(state.buffer.data() + 2 * i, &narrow, 2);
    } else {
      std::memcpy(state.buffer.data() + 4 * i, &token, 4);
    }
  }
  if (!write_all(state.bin, state.buffer.data(), state.buffer.size())) {
    return absl::InternalError(absl::StrCat(state.bin_temp(), ": write failed (", errno_text(), ")"));
  }
  state.lengths.push_back(static_cast<int32_t>(tokens.size()));
  return absl::OkStatus();
}

absl::Status IndexedDatasetWriter::finish() {
  State& state = *state_;
  SY_CHECK(!state.finished, "finish() called twice on ", state.prefix);
  const bool bin_ok = std::fflush(state.bin) == 0 && fsync(fileno(state.bin)) == 0;
  std::fclose(state.bin);
  state.bin = nullptr;
  if (!bin_ok) return absl::InternalError(absl::StrCat(state.bin_temp(), ": write failed (", errno_text(), ")"));

  const uint64_t sequences = state.lengths.size();
  std::vector<int64_t> pointers(sequences);
  std::vector<int64_t> document_indices(sequences + 1);
  int64_t pointer = 0;
  for (uint64_t i = 0; i < sequences; ++i) {
    pointers[i] = pointer;
    pointer += static_cast<int64_t>(state.lengths[i]) * static_cast<int64_t>(token_bytes(state.dtype_code));
    document_indices[i + 1] = static_cast<int64_t>(i + 1);
  }
  FILE* idx = std::fopen(state.idx_temp().c_str(), "wb");
  if (idx == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(state.idx_temp(), ": cannot create (", errno_text(), ")"));
  }
  const uint8_t code = static_cast<uint8_t>(state.dtype_code);
  const uint64_t entries = document_indices.size();
  bool ok = write_all(idx, kMagic, sizeof kMagic) && write_all(idx, &kVersion, 8) && write_all(idx, &code, 1) &&
            write_all(idx, &sequences, 8) && write_all(idx, &entries, 8) &&
            write_all(idx, state.lengths.data(), sequences * 4) && write_all(idx, pointers.data(), sequences * 8) &&
            write_all(idx, document_indices.data(), entries * 8);
  ok = ok && std::fflush(idx) == 0 && fsync(fileno(idx)) == 0;
  ok = std::fclose(idx) == 0 && ok;
  if (!ok) return absl::InternalError(absl::StrCat(state.idx_temp(), ": write failed (", errno_text(), ")"));

  // The index goes last: a reader that finds the new .idx finds the new .bin.
  if (std::rename(state.bin_temp().c_str(), state.bin_path().c_str()) != 0) {
    return absl::InternalError(absl::StrCat(state.bin_path(), ": cannot rename into place (", errno_text(), ")"));
  }
  if (std::rename(state.idx_temp().c_str(), state.idx_path().c_str()) != 0) {
    return absl::InternalError(absl::StrCat(state.idx_path(), ": cannot rename into place (", errno_text(), ")"));
  }
  state.finished = true;
  return absl::OkStatus();
}

IndexedDatasetWriter::~IndexedDatasetWriter() {
  if (!state_ || state_->finished) return;
  if (state_->bin != nullptr) std::fclose(state_->bin);
  std::remove(state_->bin_temp().c_str());
  std::remove(state_->idx_temp().c_str());
}

// ---- reader ----

struct IndexedDataset::State {
  std::string prefix;
  MappedFile idx;
  MappedFile bin;
  int dtype_code = 0;
  size_t token_bytes = 0;
  int64_t sequences = 0;
  const uint8_t* lengths = nullptr;   // i32[sequences], possibly unaligned
  const uint8_t* pointers = nullptr;  // i64[sequences]
  int64_t num_tokens = 0;
};

absl::StatusOr<std::shared_ptr<IndexedDataset>> IndexedDataset::open(const std::string& prefix) {
  std::shared_ptr<IndexedDataset> dataset(new IndexedDataset());
  dataset->state_ = std::make_unique<State>();
  State& state = *dataset->state_;
  state.prefix = prefix;
  const std::string idx_path = prefix + ".idx", bin_path = prefix + ".bin";
  if (absl::Status status = state.idx.open(idx_path); !status.ok()) return status;
  if (absl::Status status = state.bin.open(bin_path); !status.ok()) return status;

  auto damaged = [&](const std::string& what) {
    return absl::DataLossError(absl::StrCat(idx_path, ": ", what));
  };
  const uint8_t* idx = state.idx.data;
  const size_t idx_size = state.idx.size;
  if (idx_size < kHeaderBytes || std::memcmp(idx, kMagic, sizeof kMagic) != 0) {
    return damaged("not a Megatron indexed dataset index (expected the magic \"MMIDIDX\\0\\0\")");
  }
  const uint64_t version = read_scalar<uint64_t>(idx + 9);
  if (version != kVersion) return damaged(absl::StrCat("index version ", version, ", expected 1"));
  state.dtype_code = idx[17];
  state.token_bytes = token_bytes(state.dtype_code);
  if (state.token_bytes == 0) {
    return damaged(absl::StrCat("token dtype code ", state.dtype_code,
                                " is not an integer type (expected 1 u8, 2 i8, 3 i16, 4 i32, 5 i64 or 8 u16)"));
  }
  const uint64_t sequences = read_scalar<uint64_t>(idx + 18);
  const uint64_t entries = read_scalar<uint64_t>(idx + 26);
  // Each count is at most the file size, so the products below cannot overflow.
  if (sequences > idx_size || entries > idx_size || kHeaderBytes + 12 * sequences + 8 * entries != idx_size) {
    return damaged(absl::StrCat("size ", idx_size, " bytes does not match ", sequences, " sequences and ", entries,
                                " document indices (truncated or damaged)"));
  }
  state.sequences = static_cast<int64_t>(sequences);
  state.lengths = idx + kHeaderBytes;
  state.pointers = state.lengths + 4 * sequences;
  const uint8_t* document_indices = state.pointers + 8 * sequences;

  int64_t expected_pointer = 0;
  for (uint64_t i = 0; i < sequences; ++i) {
    const int32_t length = read_scalar<int32_t>(state.lengths + 4 * i);
    const int64_t pointer = read_scalar<int64_t>(state.pointers + 8 * i);
    if (length < 0) return damaged(absl::StrCat("sequence ", i, " has length ", length));
    if (pointer != expected_pointer) {
      return damaged(absl::StrCat("sequence ", i, " starts at byte ", pointer, ", expected ", expected_pointer,
                                  " after the lengths before it"));
    }
    expected_pointer += static_cast<int64_t>(length) * static_cast<int64_t>(state.token_bytes);
    state.num_tokens += length;
  }
  if (entries == 0 || read_scalar<int64_t>(document_indices) != 0 ||
      read_scalar<int64_t>(document_indices + 8 * (entries - 1)) != static_cast<int64_t>(sequences)) {
    return damaged(absl::StrCat("document indices must run from 0 to the sequence count ", sequences));
  }
  for (uint64_t i = 1; i < entries; ++i) {
    if (read_scalar<int64_t>(document_indices + 8 * i) < read_scalar<int64_t>(document_indices + 8 * (i - 1))) {
      return damaged(absl::StrCat("document index ", i, " decreases"));
    }
  }
  if (static_cast<uint64_t>(expected_pointer) != state.bin.size) {
    return absl::DataLossError(absl::StrCat(bin_path, ": ", state.bin.size, " bytes, but ", idx_path, " describes ",
                                            state.num_tokens, " tokens of ", state.token_bytes, " bytes (",
                                            expected_pointer, " bytes); truncated or from another dataset"));
  }
  return dataset;
}

IndexedDataset::~IndexedDataset() = default;

const std::string& IndexedDataset::prefix() const { return state_->prefix; }
int64_t IndexedDataset::num_documents() const { return state_->sequences; }
int64_t IndexedDataset::num_tokens() const { return state_->num_tokens; }

int64_t IndexedDataset::document_length(int64_t document) const {
  SY_CHECK(document >= 0 && document < state_->sequences, "document ", document, " of ", state_->sequences);
  return read_scalar<int32_t>(state_->lengths + 4 * document);
}

void IndexedDataset::read(int64_t document, int64_t offset, std::span<int64_t> out) const {
  const State& state = *state_;
  const int64_t length = document_length(document);
  const int64_t count = static_cast<int64_t>(out.size());
  SY_CHECK(offset >= 0 && offset + count <= length, "tokens [", offset, ", ", offset + count, ") of document ",
           document, " with ", length, " tokens");
  const uint8_t* at = state.bin.data + read_scalar<int64_t>(state.pointers + 8 * document) +
                      static_cast<size_t>(offset) * state.token_bytes;
  for (int64_t i = 0; i < count; ++i) {
    const uint8_t* token = at + static_cast<size_t>(i) * state.token_bytes;
    switch (state.dtype_code) {
      case 1: out[i] = *token; break;
      case 2: out[i] = static_cast<int8_t>(*token); break;
      case 3: out[i] = read_scalar<int16_t>(token); break;
      case 8: out[i] = read_scalar<uint16_t>(token); break;
      case 4: out[i] = read_scalar<int32_t>(token); break;
      default: out[i] = read_scalar<int64_t>(token); break;
    }
  }
}

}  // namespace sy
