// `switchyard preprocess`: trains a tokenizer and writes the dataset; user mistakes exit 1 with
// a message naming the file and write nothing.
#include "launch/preprocess_command.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "data/indexed_dataset.h"
#include "data/tokenizer.h"
#include "tests/support/scratch_directory.h"

namespace sy {
namespace {

using sy::testing::ScratchDirectory;

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

std::string fortunes() {
  std::string text;
  for (int i = 0; i < 300; ++i) {
    text += "Fortune number " + std::to_string(i) + ": you will " + (i % 3 ? "travel" : "rest") + " soon.\n%\n";
  }
  return text;
}

// Runs the command, returning its exit code and what it printed on stderr.
std::pair<int, std::string> run(const std::vector<std::string>& args) {
  ::testing::internal::CaptureStderr();
  const int code = run_preprocess(args);
  return {code, ::testing::internal::GetCapturedStderr()};
}

TEST(PreprocessCommand, TrainsTheTokenizerThenWritesTheDataset) {
  ScratchDirectory scratch;
  write_file(scratch.file("fortunes.txt"), fortunes());
  const std::vector<std::string> args = {"--input", scratch.file("fortunes.txt"), "--output-prefix",
                                         scratch.file("out/fortunes_text_document"), "--tokenizer", scratch.file("tok"),
                                         "--separator=%", "--threads", "2", "--no-progress"};
  std::vector<std::string> train = args;
  train.insert(train.end(), {"--train-tokenizer", "--vocab-size", "300"});
  auto [code, errors] = run(train);
  ASSERT_EQ(code, 0) << errors;
  auto tokenizer = Tokenizer::load(scratch.file("tok"));
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ(tokenizer->vocab_size(), 300);
  auto dataset = IndexedDataset::open(scratch.file("out/fortunes_text_document"));
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  EXPECT_EQ((*dataset)->num_documents(), 300);
  std::vector<int64_t> last((*dataset)->document_length(299));
  (*dataset)->read(299, 0, last);
  EXPECT_EQ(last.back(), tokenizer->end_of_text());

  // Training again into the same directory needs --force; without it nothing changes.
  const auto saved = std::filesystem::last_write_time(scratch.file("tok/encoder.json"));
  auto [again, again_errors] = run(train);
  EXPECT_EQ(again, 1);
  EXPECT_NE(again_errors.find(scratch.file("tok")), std::string::npos) << again_errors;
  EXPECT_NE(again_errors.find("--force"), std::string::npos) << again_errors;
  EXPECT_EQ(std::filesystem::last_write_time(scratch.file("tok/encoder.json")), saved);
  train.push_back("--force");
  EXPECT_EQ(run(train).first, 0);

  // Without --train-tokenizer the saved tokenizer is loaded.
  EXPECT_EQ(run(args).first, 0);
}

TEST(PreprocessCommand, MissingInputExitsOneNamingItAndWritesNothing) {
  ScratchDirectory scratch;
  write_file(scratch.file("a.txt"), fortunes());
  auto [code, errors] = run({"--input", scratch.file("a.txt"), "--input", scratch.file("missing.txt"),
                             "--output-prefix", scratch.file("out/data"), "--tokenizer", scratch.file("tok"),
                             "--train-tokenizer", "--vocab-size", "300", "--no-progress"});
  EXPECT_EQ(code, 1);
  EXPECT_NE(errors.find("switchyard preprocess: " + scratch.file("missing.txt")), std::string::npos) << errors;
  EXPECT_FALSE(std::filesystem::exists(scratch.file("tok")));
  EXPECT_FALSE(std::filesystem::exists(scratch.file("out")));
}

TEST(PreprocessCommand, BadFlagsAreUsageErrors) {
  EXPECT_EQ(run({"--input", "x", "--output-prefix", "p"}).first, 2);                         // no --tokenizer
  EXPECT_EQ(run({"--input", "x", "--output-prefix", "p", "--tokenizer", "t", "--bogus"}).first, 2);
  EXPECT_EQ(run({"--input", "x", "--output-prefix", "p", "--tokenizer", "t", "--train-tokenizer"}).first, 2);
  auto [code, errors] = run({"--input", "x", "--output-prefix", "p", "--tokenizer", "t", "--threads", "zero"});
  EXPECT_EQ(code, 2);
  EXPECT_NE(errors.find("--threads 'zero'"), std::string::npos) << errors;
}

}  // namespace
}  // namespace sy
