// Preprocessing: how plain text and JSON lines split into documents, that the dataset holds each
// document's tokens plus end-of-text in input order (across tokenizing chunks and threads), and
// that a missing input names the file and leaves an existing dataset alone.
#include "data/preprocess.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "data/indexed_dataset.h"
#include "tests/support/scratch_directory.h"

namespace sy {
namespace {

using testing::ScratchDirectory;

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

std::vector<std::string> documents_of(const std::string& path, const PreprocessOptions& options) {
  auto documents = read_documents(path, options);
  EXPECT_TRUE(documents.ok()) << documents.status();
  return documents.ok() ? *documents : std::vector<std::string>{};
}

TEST(ReadDocuments, PlainTextSplitsAtSeparatorLines) {
  ScratchDirectory scratch;
  write_file(scratch.file("fortunes"), "a\nb\n%\nc\n%\n%\n \n%\n%%\nd");
  PreprocessOptions percent;
  percent.separator = "%";
  // Lines keep their newline (one is added after a last line without); blank documents vanish;
  // "%%" is text, not a separator.
  EXPECT_EQ(documents_of(scratch.file("fortunes"), percent), (std::vector<std::string>{"a\nb\n", "c\n", "%%\nd\n"}));

  // The default separator is a blank line (whitespace only), with or without \r.
  write_file(scratch.file("paragraphs"), "first line\r\nsecond\r\n\r\n\n   \nnext\n\n");
  EXPECT_EQ(documents_of(scratch.file("paragraphs"), PreprocessOptions{}),
            (std::vector<std::string>{"first line\r\nsecond\r\n", "next\n"}));
}

TEST(ReadDocuments, JsonLinesTakeTheTextField) {
  ScratchDirectory scratch;
  write_file(scratch.file("a.jsonl"),
             "{\"text\": \"one\\ntwo\", \"id\": 1}\n\n{\"text\": \"\u00e9t\u00e9\"}\n{\"text\": \"  \"}\n");
  EXPECT_EQ(documents_of(scratch.file("a.jsonl"), PreprocessOptions{}),
            (std::vector<std::string>{"one\ntwo", "\u00e9t\u00e9"}));
  PreprocessOptions body;
  body.json_key = "body";
  write_file(scratch.file("b.json"), "{\"body\": \"x\"}\n");
  EXPECT_EQ(documents_of(scratch.file("b.json"), body), (std::vector<std::string>{"x"}));

  write_file(scratch.file("bad.jsonl"), "{\"text\": \"fine\"}\n{\"text\": \n");
  auto bad = read_documents(scratch.file("bad.jsonl"), PreprocessOptions{});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find(scratch.file("bad.jsonl") + ":2"), std::string::npos) << bad.status();
  auto no_key = read_documents(scratch.file("b.json"), PreprocessOptions{});
  ASSERT_FALSE(no_key.ok());
  EXPECT_NE(no_key.status().message().find("\"text\""), std::string::npos) << no_key.status();
}

std::string numbered_text(int i) {
  return absl::StrCat("Document ", i, " says: the ", i % 7 == 0 ? "quick" : "slow", " fox ", i * 31 % 1000, ".\n");
}

// 20000 documents over two files (more than one tokenizing chunk): the dataset holds
// encode(document) + end-of-text for each, in input order.
TEST(Preprocess, EveryDocumentEncodedInOrderWithEndOfText) {
  ScratchDirectory scratch;
  std::vector<std::string> texts;
  std::string plain, json_lines;
  for (int i = 0; i < 20000; ++i) {
    texts.push_back(numbered_text(i));
    if (i < 12000) {
      absl::StrAppend(&plain, texts.back(), "\n");
    } else {
      std::string line = texts.back();
      line.pop_back();  // JSON strings keep no trailing newline here
      texts.back() = line;
      absl::StrAppend(&json_lines, "{\"text\": \"", line, "\"}\n");
    }
  }
  write_file(scratch.file("part1.txt"), plain);
  write_file(scratch.file("part2.jsonl"), json_lines);
  auto tokenizer = Tokenizer::train(std::vector<std::string>(texts.begin(), texts.begin() + 2000), 320);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();

  PreprocessOptions options;
  options.inputs = {scratch.file("part1.txt"), scratch.file("part2.jsonl")};
  options.output_prefix = scratch.file("out/corpus");  // the directory is created
  options.threads = 2;
  options.progress = false;
  auto report = preprocess(*tokenizer, options);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->documents, 20000);
  EXPECT_GT(report->seconds, 0);

  auto dataset = IndexedDataset::open(scratch.file("out/corpus"));
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  ASSERT_EQ((*dataset)->num_documents(), 20000);
  int64_t tokens = 0, bytes = 0;
  for (int i = 0; i < 20000; ++i) {
    std::vector<int32_t> expected = tokenizer->encode(texts[i]);
    expected.push_back(tokenizer->end_of_text());
    std::vector<int64_t> stored((*dataset)->document_length(i));
    (*dataset)->read(i, 0, stored);
    ASSERT_EQ(stored, std::vector<int64_t>(expected.begin(), expected.end())) << "document " << i;
    tokens += static_cast<int64_t>(expected.size());
    bytes += static_cast<int64_t>(texts[i].size());
  }
  EXPECT_EQ(report->tokens, tokens);
  EXPECT_EQ(report->bytes, bytes);
  EXPECT_EQ((*dataset)->num_tokens(), tokens);
  // A 320-token vocabulary is stored as u16.
  EXPECT_EQ(std::filesystem::file_size(scratch.file("out/corpus.bin")), static_cast<uintmax_t>(2 * tokens));
}

TEST(Preprocess, MissingInputIsNamedAndNothingIsWritten) {
  ScratchDirectory scratch;
  write_file(scratch.file("good.txt"), "hello there\n\ngeneral\n");
  auto tokenizer = Tokenizer::train({"hello there", "general"}, 260);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  PreprocessOptions options;
  options.inputs = {scratch.file("good.txt")};
  options.output_prefix = scratch.file("corpus");
  options.progress = false;
  ASSERT_TRUE(preprocess(*tokenizer, options).ok());
  const auto bin_time = std::filesystem::last_write_time(scratch.file("corpus.bin"));
  const auto idx_time = std::filesystem::last_write_time(scratch.file("corpus.idx"));

  options.inputs = {scratch.file("good.txt"), scratch.file("absent.txt")};
  auto report = preprocess(*tokenizer, options);
  ASSERT_FALSE(report.ok());
  EXPECT_NE(report.status().message().find(scratch.file("absent.txt")), std::string::npos) << report.status();
  EXPECT_EQ(std::filesystem::last_write_time(scratch.file("corpus.bin")), bin_time);
  EXPECT_EQ(std::filesystem::last_write_time(scratch.file("corpus.idx")), idx_time);
  EXPECT_FALSE(std::filesystem::exists(scratch.file("corpus.bin.tmp")));

  // A bad JSON line found half way leaves no temporary files and the old dataset.
  write_file(scratch.file("bad.jsonl"), "{\"text\": \"ok\"}\nnot json\n");
  options.inputs = {scratch.file("good.txt"), scratch.file("bad.jsonl")};
  ASSERT_FALSE(preprocess(*tokenizer, options).ok());
  EXPECT_FALSE(std::filesystem::exists(scratch.file("corpus.bin.tmp")));
  EXPECT_EQ(std::filesystem::last_write_time(scratch.file("corpus.idx")), idx_time);
}

}  // namespace
}  // namespace sy
