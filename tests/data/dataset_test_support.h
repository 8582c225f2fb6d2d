// Helpers shared by the data tests: tiny indexed datasets written straight from token ids.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "data/indexed_dataset.h"

namespace sy::testing {

// Writes prefix.bin/.idx holding `documents`; fails the test on any error.
inline void write_dataset(const std::string& prefix, const std::vector<std::vector<int32_t>>& documents,
                          int64_t vocab_size = 65536) {
  auto writer = IndexedDatasetWriter::create(prefix, vocab_size);
  ASSERT_TRUE(writer.ok()) << writer.status();
  for (const auto& document : documents) ASSERT_TRUE((*writer)->add_document(document).ok());
  ASSERT_TRUE((*writer)->finish().ok());
}

// Documents whose every token names where it is: document d, position p -> d * 1000 + p
// (so lengths stay below 1000 and d below 65).
inline std::vector<std::vector<int32_t>> labelled_documents(const std::vector<int>& lengths) {
  std::vector<std::vector<int32_t>> documents;
  for (size_t d = 0; d < lengths.size(); ++d) {
    std::vector<int32_t> tokens(lengths[d]);
    for (int p = 0; p < lengths[d]; ++p) tokens[p] = static_cast<int32_t>(d * 1000 + p);
    documents.push_back(tokens);
  }
  return documents;
}

}  // namespace sy::testing
