// The indexed dataset: round trips in both token dtypes, the bytes on disk against an
// independent numpy reader, temporary files, and every damaged-file error naming its file.
#include "data/indexed_dataset.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <functional>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "absl/strings/str_cat.h"
#include "tests/data/dataset_test_support.h"
#include "tests/support/scratch_directory.h"

#ifndef SY_TORCH_PYTHON
#define SY_TORCH_PYTHON "/usr/bin/python3"
#endif
#ifndef SY_SOURCE_DIR
#define SY_SOURCE_DIR "."
#endif

namespace sy {
namespace {

using testing::ScratchDirectory;
using testing::write_dataset;

std::vector<std::vector<int32_t>> random_documents(int count, int64_t vocab_size, uint64_t seed) {
  std::mt19937_64 engine(seed);
  std::vector<std::vector<int32_t>> documents(count);
  for (auto& document : documents) {
    document.resize(engine() % 50);  // empty documents included
    for (int32_t& token : document) token = static_cast<int32_t>(engine() % vocab_size);
  }
  documents.front().assign({0, static_cast<int32_t>(vocab_size - 1)});  // both ends of the range
  return documents;
}

std::vector<int64_t> read_document(const IndexedDataset& dataset, int64_t document) {
  std::vector<int64_t> tokens(dataset.document_length(document));
  dataset.read(document, 0, tokens);
  return tokens;
}

void expect_same(const IndexedDataset& dataset, const std::vector<std::vector<int32_t>>& documents) {
  ASSERT_EQ(dataset.num_documents(), static_cast<int64_t>(documents.size()));
  int64_t tokens = 0;
  for (size_t d = 0; d < documents.size(); ++d) {
    EXPECT_EQ(read_document(dataset, d), std::vector<int64_t>(documents[d].begin(), documents[d].end())) << d;
    tokens += documents[d].size();
  }
  EXPECT_EQ(dataset.num_tokens(), tokens);
}

int64_t count_tokens(const std::vector<std::vector<int32_t>>& documents) {
  int64_t tokens = 0;
  for (const auto& document : documents) tokens += document.size();
  return tokens;
}

TEST(IndexedDataset, SmallestDtypeForTheVocabulary) {
  EXPECT_EQ(indexed_dtype_code_for_vocab(256), 8);
  EXPECT_EQ(indexed_dtype_code_for_vocab(50257), 8);
  EXPECT_EQ(indexed_dtype_code_for_vocab(65536), 8);
  EXPECT_EQ(indexed_dtype_code_for_vocab(65537), 4);
  EXPECT_EQ(indexed_dtype_code_for_vocab(200000), 4);
}

TEST(IndexedDataset, RoundTripU16) {
  ScratchDirectory scratch;
  const std::string prefix = scratch.file("u16");
  const auto documents = random_documents(40, 65536, 1);
  write_dataset(prefix, documents, 65536);
  EXPECT_EQ(std::filesystem::file_size(prefix + ".bin"), 2 * count_tokens(documents));
  auto dataset = IndexedDataset::open(prefix);
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  EXPECT_EQ((*dataset)->prefix(), prefix);
  expect_same(**dataset, documents);
  // A slice from the middle of a document.
  std::vector<int64_t> middle(3);
  (*dataset)->read(0, 0, std::span<int64_t>(middle).first(2));
  EXPECT_EQ(middle[1], 65535);
}

TEST(IndexedDataset, RoundTripI32AboveU16) {
  ScratchDirectory scratch;
  const std::string prefix = scratch.file("i32");
  const auto documents = random_documents(30, 70000, 2);
  write_dataset(prefix, documents, 70000);
  EXPECT_EQ(std::filesystem::file_size(prefix + ".bin"), 4 * count_tokens(documents));
  auto dataset = IndexedDataset::open(prefix);
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  expect_same(**dataset, documents);
}

TEST(IndexedDataset, NoDocuments) {
  ScratchDirectory scratch;
  write_dataset(scratch.file("empty"), {});
  auto dataset = IndexedDataset::open(scratch.file("empty"));
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  EXPECT_EQ((*dataset)->num_documents(), 0);
  EXPECT_EQ((*dataset)->num_tokens(), 0);
}

// The numpy reader in tests/reference/ was written from the format description, not from this
// code; it must see the same documents, dtype and document boundaries.
TEST(IndexedDataset, NumpyReaderAgrees) {
  if (std::system(SY_TORCH_PYTHON " -c 'import numpy' > /dev/null 2>&1") != 0) {
    GTEST_SKIP() << SY_TORCH_PYTHON " cannot import numpy (scripts/install-deps.sh installs python3-numpy)";
  }
  ScratchDirectory scratch;
  for (int64_t vocab_size : {65536, 100000}) {
    const std::string prefix = scratch.file(absl::StrCat("vocab", vocab_size));
    const auto documents = random_documents(25, vocab_size, vocab_size);
    write_dataset(prefix, documents, vocab_size);
    const std::string command = absl::StrCat(SY_TORCH_PYTHON " " SY_SOURCE_DIR "/tests/reference/indexed_dataset_reader.py ",
                                             prefix, " 2>&1");
    FILE* pipe = popen(command.c_str(), "r");
    ASSERT_NE(pipe, nullptr);
    std::string output;
    char buffer[4096];
    size_t n;
    while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) output.append(buffer, n);
    ASSERT_EQ(pclose(pipe), 0) << output;
    nlohmann::json read = nlohmann::json::parse(output, nullptr, false);
    ASSERT_FALSE(read.is_discarded()) << output;
    EXPECT_EQ(read["dtype_code"].get<int>(), indexed_dtype_code_for_vocab(vocab_size));
    EXPECT_EQ(read["sequence_count"].get<int64_t>(), 25);
    std::vector<int64_t> boundaries(26);
    for (int i = 0; i <= 25; ++i) boundaries[i] = i;
    EXPECT_EQ(read["document_indices"].get<std::vector<int64_t>>(), boundaries);
    auto documents_read = read["documents"].get<std::vector<std::vector<int32_t>>>();
    EXPECT_EQ(documents_read, documents) << "vocab " << vocab_size;
  }
}

TEST(IndexedDataset, UnfinishedWriterLeavesTheOldDatasetAndNoTemporaries) {
  ScratchDirectory scratch;
  const std::string prefix = scratch.file("data");
  const auto old_documents = random_documents(5, 1000, 3);
  write_dataset(prefix, old_documents, 1000);
  {
    auto writer = IndexedDatasetWriter::create(prefix, 1000);
    ASSERT_TRUE(writer.ok());
    ASSERT_TRUE((*writer)->add_document(std::vector<int32_t>{1, 2, 3}).ok());
    EXPECT_TRUE(std::filesystem::exists(prefix + ".bin.tmp"));
  }
  EXPECT_FALSE(std::filesystem::exists(prefix + ".bin.tmp"));
  EXPECT_FALSE(std::filesystem::exists(prefix + ".idx.tmp"));
  auto dataset = IndexedDataset::open(prefix);
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  expect_same(**dataset, old_documents);

  // A finished writer replaces it.
  write_dataset(prefix, {{7, 8}}, 1000);
  dataset = IndexedDataset::open(prefix);
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  expect_same(**dataset, {{7, 8}});
}

TEST(IndexedDataset, TokenOutsideTheVocabularyIsAnError) {
  ScratchDirectory scratch;
  auto writer = IndexedDatasetWriter::create(scratch.file("data"), 100);
  ASSERT_TRUE(writer.ok());
  absl::Status status = (*writer)->add_document(std::vector<int32_t>{5, 100});
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.message().find("token 100"), std::string::npos) << status;
  EXPECT_FALSE((*writer)->add_document(std::vector<int32_t>{-1}).ok());
}

// Overwrites `bytes` at `offset` of a file.
void patch(const std::string& path, std::streamoff offset, const std::string& bytes) {
  std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
  file.seekp(offset);
  file.write(bytes.data(), bytes.size());
}

struct Damage {
  std::string name;
  std::function<void(const std::string& prefix)> apply;
  std::string file;      // the file the message must name
  std::string expected;  // and a phrase it must contain
};

TEST(IndexedDataset, DamagedFilesAreErrorsNamingTheFile) {
  const std::vector<Damage> damages = {
      {"missing idx", [](const std::string& p) { std::filesystem::remove(p + ".idx"); }, ".idx", "cannot open"},
      {"missing bin", [](const std::string& p) { std::filesystem::remove(p + ".bin"); }, ".bin", "cannot open"},
      {"bad magic", [](const std::string& p) { patch(p + ".idx", 0, "MMIDIDY"); }, ".idx", "magic"},
      {"version 2", [](const std::string& p) { patch(p + ".idx", 9, std::string("\x02", 1)); }, ".idx", "version 2"},
      {"float dtype", [](const std::string& p) { patch(p + ".idx", 17, std::string("\x07", 1)); }, ".idx",
       "dtype code 7"},
      {"truncated idx", [](const std::string& p) { std::filesystem::resize_file(p + ".idx", 60); }, ".idx",
       "truncated"},
      {"short bin", [](const std::string& p) { std::filesystem::resize_file(p + ".bin", 10); }, ".bin", "truncated"},
      {"wrong dtype for bin", [](const std::string& p) { patch(p + ".idx", 17, std::string("\x04", 1)); }, ".idx",
       "starts at byte"},
      {"bad document indices",
       [](const std::string& p) {
         patch(p + ".idx", std::filesystem::file_size(p + ".idx") - 8, std::string("\x09\0\0\0\0\0\0\0", 8));
       },
       ".idx", "document indices"},
  };
  for (const Damage& damage : damages) {
    ScratchDirectory scratch;
    const std::string prefix = scratch.file("data");
    write_dataset(prefix, random_documents(6, 1000, 4), 1000);
    damage.apply(prefix);
    auto dataset = IndexedDataset::open(prefix);
    ASSERT_FALSE(dataset.ok()) << damage.name;
    const std::string message(dataset.status().message());
    EXPECT_NE(message.find(prefix + damage.file), std::string::npos) << damage.name << ": " << message;
    EXPECT_NE(message.find(damage.expected), std::string::npos) << damage.name << ": " << message;
  }
}

}  // namespace
}  // namespace sy
