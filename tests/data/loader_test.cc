// The loader: tokens and targets by global sample number, blends of indexed datasets built
// from a DataConfig, and errors naming a missing or damaged file.
#include "data/loader.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "tests/data/dataset_test_support.h"
#include "tests/support/scratch_directory.h"

namespace sy {
namespace {

using testing::labelled_documents;
using testing::ScratchDirectory;
using testing::write_dataset;

std::vector<int64_t> sample_of(const SampleSource& source, int64_t index) {
  std::vector<int64_t> tokens(source.seq_length() + 1);
  source.sample(index, tokens);
  return tokens;
}

DataConfig config_for(const std::vector<DataSource>& sources, const std::string& cache_dir) {
  DataConfig config;
  config.sources = sources;
  config.seq_length = 6;
  config.split = "1";
  config.cache_dir = cache_dir;
  return config;
}

TEST(Loader, TokensAndTargetsShiftedByOne) {
  ScratchDirectory scratch;
  write_dataset(scratch.file("data"), labelled_documents({30, 7, 12, 40, 3, 25}));
  auto source = build_dataset(config_for({{scratch.file("data"), 1.0}}, ""), Split::kTrain, 20);
  ASSERT_TRUE(source.ok()) << source.status();
  const int64_t size = (*source)->size();
  ASSERT_GE(size, 20);
  Loader loader(*source, 4);
  EXPECT_EQ(loader.micro_batch_size(), 4);
  // The last batch wraps past the end to sample 0.
  for (int64_t first : {int64_t{0}, int64_t{5}, size - 2}) {
    Batch batch = loader.batch(first);
    ASSERT_EQ(batch.tokens.shape(), (Shape{4, 6}));
    ASSERT_EQ(batch.targets.shape(), (Shape{4, 6}));
    ASSERT_EQ(batch.tokens.dtype(), DType::kI64);
    ASSERT_EQ(batch.targets.dtype(), DType::kI64);
    const std::vector<int64_t> tokens = batch.tokens.to_vector<int64_t>(), targets = batch.targets.to_vector<int64_t>();
    for (int64_t b = 0; b < 4; ++b) {
      const std::vector<int64_t> sample = sample_of(**source, (first + b) % size);
      for (int64_t t = 0; t < 6; ++t) {
        EXPECT_EQ(tokens[b * 6 + t], sample[t]);
        EXPECT_EQ(targets[b * 6 + t], sample[t + 1]);
      }
    }
  }
}

TEST(Loader, SameBatchWhateverCameBefore) {
  ScratchDirectory scratch;
  write_dataset(scratch.file("data"), labelled_documents({30, 7, 12, 40, 3, 25}));
  const DataConfig config = config_for({{scratch.file("data"), 1.0}}, "");
  auto first = build_dataset(config, Split::kTrain, 30);
  auto second = build_dataset(config, Split::kTrain, 30);  // a resumed run: rebuilt from the cache
  ASSERT_TRUE(first.ok() && second.ok());
  Loader one(*first, 3), other(*second, 3);
  const Batch direct = other.batch(12);
  for (int64_t s = 0; s < 12; s += 3) one.batch(s);
  const Batch after = one.batch(12);
  EXPECT_EQ(direct.tokens.to_vector<int64_t>(), after.tokens.to_vector<int64_t>());
  EXPECT_EQ(direct.targets.to_vector<int64_t>(), after.targets.to_vector<int64_t>());
}

// Two datasets with disjoint token ranges blended 3:1: every sample comes whole from one of
// them, in that proportion.
TEST(Loader, BuildDatasetBlendsTheSourcesByWeight) {
  ScratchDirectory scratch;
  write_dataset(scratch.file("a"), labelled_documents({30, 7, 12, 40, 3, 25}));
  auto b_documents = labelled_documents({9, 14, 22});
  for (auto& document : b_documents) {
    for (int32_t& token : document) token += 50000;
  }
  write_dataset(scratch.file("b"), b_documents);
  const DataConfig config = config_for({{scratch.file("a"), 3.0}, {scratch.file("b"), 1.0}}, scratch.file("cache"));
  for (int64_t num_samples : {400, 0}) {
    auto source = build_dataset(config, Split::kTrain, num_samples);
    ASSERT_TRUE(source.ok()) << source.status();
    if (num_samples > 0) {
      EXPECT_EQ((*source)->size(), num_samples);
    }
    ASSERT_GT((*source)->size(), 0);
    int64_t from_a = 0;
    for (int64_t i = 0; i < (*source)->size(); ++i) {
      const std::vector<int64_t> sample = sample_of(**source, i);
      const bool a = sample[0] < 50000;
      for (int64_t token : sample) ASSERT_EQ(token < 50000, a) << "sample " << i << " mixes the sources";
      from_a += a;
    }
    EXPECT_LT(std::abs(static_cast<double>(from_a) - 0.75 * static_cast<double>((*source)->size())), 1.0);
  }
}

TEST(Loader, MissingOrDamagedFileIsNamed) {
  ScratchDirectory scratch;
  write_dataset(scratch.file("good"), labelled_documents({10, 10}));
  auto missing = build_dataset(config_for({{scratch.file("good"), 1.0}, {scratch.file("absent"), 1.0}}, ""),
                               Split::kTrain, 10);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find(scratch.file("absent.idx")), std::string::npos) << missing.status();

  write_dataset(scratch.file("short"), labelled_documents({10, 10}));
  std::filesystem::resize_file(scratch.file("short.bin"), 7);
  auto damaged = build_dataset(config_for({{scratch.file("short"), 1.0}}, ""), Split::kTrain, 10);
  ASSERT_FALSE(damaged.ok());
  EXPECT_NE(damaged.status().message().find(scratch.file("short.bin")), std::string::npos) << damaged.status();

  EXPECT_FALSE(build_dataset(config_for({}, ""), Split::kTrain, 10).ok());
}

}  // namespace
}  // namespace sy
