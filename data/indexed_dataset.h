// Megatron-compatible indexed datasets: prefix.bin holds every document's tokens back to
// back; prefix.idx ("MMIDIDX\0\0", version 1, dtype code, sequence lengths, byte pointers,
// document boundaries) says where each document starts. Read through a memory map.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/dtype.h"

namespace sy {

// The smallest token dtype that holds ids below vocab_size (u16 up to 65536, else i32).
// Megatron dtype codes: 1 u8, 2 i8, 3 i16, 4 i32, 5 i64, 6 f64, 7 f32, 8 u16.
int indexed_dtype_code_for_vocab(int64_t vocab_size);

class IndexedDatasetWriter {
 public:
  // Writes prefix.bin / prefix.idx under temporary names; finish() renames them into place, so
  // an existing dataset stays untouched until the new one is complete.
  static absl::StatusOr<std::unique_ptr<IndexedDatasetWriter>> create(const std::string& prefix,
                                                                      int64_t vocab_size);
  absl::Status add_document(std::span<const int32_t> tokens);
  absl::Status finish();
  ~IndexedDatasetWriter();  // removes the temporary files when finish() was not reached

 private:
  IndexedDatasetWriter() = default;
  struct State;
  std::unique_ptr<State> state_;
};

class IndexedDataset {
 public:
  // Fails naming the file on a missing file, a bad magic/version/dtype, or sizes that
  // disagree between .idx and .bin.
  static absl::StatusOr<std::shared_ptr<IndexedDataset>> open(const std::string& prefix);
  ~IndexedDataset();

  const std::string& prefix() const;
  int64_t num_documents() const;
  int64_t num_tokens() const;
  int64_t document_length(int64_t document) const;
  // Copies tokens [offset, offset + out.size()) of `document` into `out`.
  void read(int64_t document, int64_t offset, std::span<int64_t> out) const;

 private:
  IndexedDataset() = default;
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace sy
