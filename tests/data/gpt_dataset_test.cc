// GPT samples: Megatron's split rounding, samples against a naive reconstruction from the
// cached arrays, coverage of every token of a split, reproducibility, and the cache's hits
// and rebuilds.
#include "data/gpt_dataset.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "tests/data/dataset_test_support.h"
#include "tests/support/scratch_directory.h"
#include "tests/support/torch_reference.h"

namespace sy {
namespace {

using testing::labelled_documents;
using testing::ScratchDirectory;
using testing::write_dataset;

using Ranges = std::array<std::pair<int64_t, int64_t>, 3>;

Ranges split_of(const std::string& weights, int64_t documents) {
  auto ranges = split_documents(weights, documents);
  EXPECT_TRUE(ranges.ok()) << ranges.status();
  return ranges.ok() ? *ranges : Ranges{};
}

// Values from Megatron's get_train_valid_test_split_ (Python's round: half to even).
TEST(SplitDocuments, MegatronRounding) {
  EXPECT_EQ(split_of("969,30,1", 1000), (Ranges{{{0, 969}, {969, 999}, {999, 1000}}}));
  EXPECT_EQ(split_of("969,30,1", 10), (Ranges{{{0, 10}, {10, 10}, {10, 10}}}));
  EXPECT_EQ(split_of("1,1,1", 5), (Ranges{{{0, 1}, {1, 3}, {3, 5}}}));  // 2,2,2 then shifted back by 1
  EXPECT_EQ(split_of("1,1", 3), (Ranges{{{0, 1}, {1, 3}, {3, 3}}}));    // round(1.5) = 2 twice
  EXPECT_EQ(split_of("1,1", 5), (Ranges{{{0, 3}, {3, 5}, {5, 5}}}));    // round(2.5) = 2 twice, shifted forward
  EXPECT_EQ(split_of("80/10/10", 100), (Ranges{{{0, 80}, {80, 90}, {90, 100}}}));
  EXPECT_EQ(split_of("1", 7), (Ranges{{{0, 7}, {7, 7}, {7, 7}}}));
  EXPECT_EQ(split_of("969,30,1", 0), (Ranges{{{0, 0}, {0, 0}, {0, 0}}}));
}

TEST(SplitDocuments, BadWeightsAreErrors) {
  for (const char* bad : {"a,b", "1,-1,0", "0,0,0", "1,2,3,4", ""}) {
    auto ranges = split_documents(bad, 10);
    EXPECT_FALSE(ranges.ok()) << bad;
    if (!ranges.ok()) {
      EXPECT_NE(ranges.status().message().find("split"), std::string::npos);
    }
  }
}

std::vector<int64_t> sample_of(const SampleSource& source, int64_t index) {
  std::vector<int64_t> tokens(source.seq_length() + 1);
  source.sample(index, tokens);
  return tokens;
}

std::vector<std::string> cache_files(const std::filesystem::path& directory, const std::string& suffix) {
  std::vector<std::string> files;
  if (!std::filesystem::exists(directory)) return files;
  for (const auto& entry : std::filesystem::directory_iterator(directory)) {
    const std::string name = entry.path().string();
    if (name.ends_with(suffix)) files.push_back(name);
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::vector<int64_t> read_array(const std::string& path) {
  auto tensor = testing::read_npy(path);
  EXPECT_TRUE(tensor.ok()) << tensor.status();
  return tensor.ok() ? tensor->to_vector<int64_t>() : std::vector<int64_t>{};
}

std::shared_ptr<SampleSource> build(const std::string& prefix, GptDatasetOptions options) {
  auto dataset = IndexedDataset::open(prefix);
  EXPECT_TRUE(dataset.ok()) << dataset.status();
  if (!dataset.ok()) return nullptr;
  auto samples = build_gpt_dataset(*dataset, options);
  EXPECT_TRUE(samples.ok()) << samples.status();
  return samples.ok() ? *samples : nullptr;
}

const std::vector<int> kLengths = {5, 1, 0, 17, 3, 9, 2, 30, 4, 11, 6, 8};  // 96 tokens

// Each sample equals seq_length + 1 consecutive tokens of the documents concatenated in the
// cached document order, starting at shuffle[i] * seq_length.
TEST(GptDataset, SamplesMatchANaiveReconstruction) {
  ScratchDirectory scratch;
  const auto documents = labelled_documents(kLengths);
  write_dataset(scratch.file("data"), documents);
  GptDatasetOptions options{.split = Split::kTrain, .num_samples = 50, .seq_length = 4, .seed = 7,
                            .split_weights = "1", .cache_dir = scratch.file("cache")};
  auto source = build(scratch.file("data"), options);
  ASSERT_NE(source, nullptr);
  // 50 samples need 201 tokens: 3 epochs of 96, which hold (288 - 1) / 4 samples.
  EXPECT_EQ(source->size(), 71);
  EXPECT_EQ(source->seq_length(), 4);

  const auto document_files = cache_files(scratch.path() / "cache", "_document_index.npy");
  const auto shuffle_files = cache_files(scratch.path() / "cache", "_shuffle_index.npy");
  ASSERT_EQ(document_files.size(), 1u);
  ASSERT_EQ(shuffle_files.size(), 1u);
  const std::vector<int64_t> document_index = read_array(document_files[0]);
  const std::vector<int64_t> shuffle_index = read_array(shuffle_files[0]);
  ASSERT_EQ(document_index.size(), 3 * kLengths.size());
  ASSERT_EQ(shuffle_index.size(), 71u);

  // Each epoch is a permutation of the documents, and the epochs differ.
  std::vector<std::vector<int64_t>> epochs;
  for (int epoch = 0; epoch < 3; ++epoch) {
    std::vector<int64_t> order(document_index.begin() + epoch * 12, document_index.begin() + (epoch + 1) * 12);
    epochs.push_back(order);
    std::sort(order.begin(), order.end());
    for (int64_t d = 0; d < 12; ++d) EXPECT_EQ(order[d], d);
  }
  EXPECT_NE(epochs[0], epochs[1]);

  std::vector<int64_t> stream;
  for (int64_t document : document_index) stream.insert(stream.end(), documents[document].begin(), documents[document].end());
  std::vector<int64_t> sorted_shuffle = shuffle_index;
  std::sort(sorted_shuffle.begin(), sorted_shuffle.end());
  for (int64_t i = 0; i < 71; ++i) EXPECT_EQ(sorted_shuffle[i], i);
  EXPECT_NE(shuffle_index, sorted_shuffle);
  for (int64_t i = 0; i < source->size(); ++i) {
    const int64_t start = shuffle_index[i] * 4;
    std::vector<int64_t> expected(stream.begin() + start, stream.begin() + start + 5);
    EXPECT_EQ(sample_of(*source, i), expected) << "sample " << i;
  }
}

// With enough samples for more than one epoch, every token of a split's documents appears
// and none from another split.
TEST(GptDataset, EveryTokenOfTheSplitAndNoOther) {
  ScratchDirectory scratch;
  std::vector<int> lengths;
  for (int d = 0; d < 40; ++d) lengths.push_back(1 + (d * 37) % 23);
  const auto documents = labelled_documents(lengths);
  write_dataset(scratch.file("data"), documents);
  auto ranges = split_documents("6,3,1", 40);
  ASSERT_TRUE(ranges.ok());
  for (Split split : {Split::kTrain, Split::kValid, Split::kTest}) {
    const auto [first, last] = (*ranges)[static_cast<int>(split)];
    std::set<int64_t> expected;
    for (int64_t d = first; d < last; ++d) expected.insert(documents[d].begin(), documents[d].end());
    GptDatasetOptions options{.split = split, .num_samples = static_cast<int64_t>(expected.size()) / 3 + 1,
                              .seq_length = 3, .seed = 11, .split_weights = "6,3,1"};
    auto source = build(scratch.file("data"), options);
    ASSERT_NE(source, nullptr);
    EXPECT_GE(source->size(), options.num_samples);
    std::set<int64_t> seen;
    for (int64_t i = 0; i < source->size(); ++i) {
      for (int64_t token : sample_of(*source, i)) seen.insert(token);
    }
    EXPECT_EQ(seen, expected) << split_name(split);
  }
  // The cache went next to the data by default.
  EXPECT_EQ(cache_files(scratch.path(), "_sample_index.npy").size(), 3u);
}

TEST(GptDataset, OneEpochWhenNumSamplesIsZero) {
  ScratchDirectory scratch;
  write_dataset(scratch.file("data"), labelled_documents(kLengths));
  auto source = build(scratch.file("data"), {.num_samples = 0, .seq_length = 10, .split_weights = "1"});
  ASSERT_NE(source, nullptr);
  EXPECT_EQ(source->size(), 9);  // (96 - 1) / 10
}

TEST(GptDataset, ReproducibleAndSeeded) {
  ScratchDirectory scratch;
  write_dataset(scratch.file("data"), labelled_documents(kLengths));
  GptDatasetOptions options{.num_samples = 40, .seq_length = 5, .seed = 3, .split_weights = "1",
                            .cache_dir = scratch.file("a")};
  auto first = build(scratch.file("data"), options);
  options.cache_dir = scratch.file("b");
  auto second = build(scratch.file("data"), options);
  options.cache_dir = scratch.file("c");
  options.seed = 4;
  auto reseeded = build(scratch.file("data"), options);
  ASSERT_TRUE(first && second && reseeded);
  ASSERT_EQ(first->size(), second->size());
  bool differs = false;
  for (int64_t i = 0; i < first->size(); ++i) {
    EXPECT_EQ(sample_of(*first, i), sample_of(*second, i));
    differs = differs || sample_of(*first, i) != sample_of(*reseeded, i);
  }
  EXPECT_TRUE(differs);
}

TEST(GptDataset, CacheIsReadAndRebuiltWhenItsInputsChange) {
  ScratchDirectory scratch;
  const std::string prefix = scratch.file("data");
  const std::filesystem::path cache = scratch.path() / "cache";
  write_dataset(prefix, labelled_documents(kLengths));
  GptDatasetOptions options{.num_samples = 30, .seq_length = 4, .seed = 5, .split_weights = "1",
                            .cache_dir = cache.string()};
  auto fresh = build(prefix, options);
  ASSERT_NE(fresh, nullptr);
  const auto shuffle_files = cache_files(cache, "_shuffle_index.npy");
  ASSERT_EQ(shuffle_files.size(), 1u);
  EXPECT_EQ(cache_files(cache, ".npy").size(), 3u);
  EXPECT_EQ(cache_files(cache, ".tmp").size(), 0u);

  // A hit reads the cached order: replace the shuffle by the identity and sample i becomes
  // what was sample shuffle^-1(i).
  std::vector<int64_t> shuffle = read_array(shuffle_files[0]);
  std::vector<int64_t> identity(shuffle.size());
  for (size_t i = 0; i < identity.size(); ++i) identity[i] = static_cast<int64_t>(i);
  ASSERT_TRUE(testing::write_npy(shuffle_files[0], Tensor::from_vector(identity, {static_cast<int64_t>(identity.size())},
                                                                         DType::kI64)).ok());
  auto cached = build(prefix, options);
  ASSERT_NE(cached, nullptr);
  for (size_t i = 0; i < shuffle.size(); ++i) EXPECT_EQ(sample_of(*cached, shuffle[i]), sample_of(*fresh, i));

  // A damaged cache file is rebuilt, not trusted.
  std::filesystem::resize_file(shuffle_files[0], 100);
  auto rebuilt = build(prefix, options);
  ASSERT_NE(rebuilt, nullptr);
  for (int64_t i = 0; i < fresh->size(); ++i) EXPECT_EQ(sample_of(*rebuilt, i), sample_of(*fresh, i));
  EXPECT_EQ(cache_files(cache, ".npy").size(), 3u);

  // Another seed, sequence length or sample count is another cache entry.
  options.seed = 6;
  ASSERT_NE(build(prefix, options), nullptr);
  EXPECT_EQ(cache_files(cache, ".npy").size(), 6u);
  options.seq_length = 8;
  ASSERT_NE(build(prefix, options), nullptr);
  options.num_samples = 31;
  ASSERT_NE(build(prefix, options), nullptr);
  EXPECT_EQ(cache_files(cache, ".npy").size(), 12u);

  // Rewriting the dataset (new size and time) makes a new entry too.
  std::vector<int> longer = kLengths;
  longer.push_back(20);
  write_dataset(prefix, labelled_documents(longer));
  ASSERT_NE(build(prefix, options), nullptr);
  EXPECT_EQ(cache_files(cache, ".npy").size(), 15u);
}

TEST(GptDataset, EmptySplitAndBadOptionsAreErrors) {
  ScratchDirectory scratch;
  write_dataset(scratch.file("data"), labelled_documents({4, 4, 4}));
  auto dataset = IndexedDataset::open(scratch.file("data"));
  ASSERT_TRUE(dataset.ok());
  // 3 documents under 969,30,1: all in train, nothing in test.
  auto empty = build_gpt_dataset(*dataset, {.split = Split::kTest, .num_samples = 10, .seq_length = 2});
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.status().message().find(scratch.file("data")), std::string::npos) << empty.status();
  EXPECT_NE(empty.status().message().find("test"), std::string::npos) << empty.status();
  EXPECT_FALSE(build_gpt_dataset(*dataset, {.num_samples = 10, .seq_length = 0}).ok());
  EXPECT_FALSE(build_gpt_dataset(*dataset, {.num_samples = 10, .split_weights = "x"}).ok());
  // An empty split asked for no samples is an empty dataset, not an error.
  auto none = build_gpt_dataset(*dataset, {.split = Split::kTest, .num_samples = 0, .seq_length = 2});
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ((*none)->size(), 0);
}

}  // namespace
}  // namespace sy
