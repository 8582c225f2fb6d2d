// Blending: after every n samples each source's count is within one of n * weight (weights
// normalized), each source's samples are taken in order, and bad arguments are errors.
#include "data/blended_dataset.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

namespace sy {

namespace {

// Sample i of source s is seq_length + 1 copies of s * 1000000 + i.
class CountingSource final : public SampleSource {
 public:
  CountingSource(int64_t id, int64_t size, int64_t seq_length = 3) : id_(id), size_(size), seq_length_(seq_length) {}
  int64_t size() const override { return size_; }
  int64_t seq_length() const override { return seq_length_; }
  void sample(int64_t index, std::span<int64_t> out) const override {
    for (int64_t& token : out) token = id_ * 1000000 + index;
  }

 private:
  int64_t id_, size_, seq_length_;
};

std::vector<std::shared_ptr<SampleSource>> counting_sources(size_t count, int64_t size) {
  std::vector<std::shared_ptr<SampleSource>> sources;
  for (size_t s = 0; s < count; ++s) sources.push_back(std::make_shared<CountingSource>(s, size));
  return sources;
}

void expect_shares_within_one(const std::vector<double>& weights, int64_t num_samples) {
  double total = 0;
  for (double weight : weights) total += weight;
  auto blend = make_blended_dataset(counting_sources(weights.size(), num_samples), weights, num_samples);
  ASSERT_TRUE(blend.ok()) << blend.status();
  ASSERT_EQ((*blend)->size(), num_samples);
  ASSERT_EQ((*blend)->seq_length(), 3);
  std::vector<int64_t> counts(weights.size(), 0);
  std::vector<int64_t> tokens(4);
  double worst = 0;
  for (int64_t n = 1; n <= num_samples; ++n) {
    (*blend)->sample(n - 1, tokens);
    const int64_t source = tokens[0] / 1000000, index = tokens[0] % 1000000;
    ASSERT_EQ(index, counts[source]) << "source " << source << " out of order at sample " << n - 1;
    ++counts[source];
    for (size_t s = 0; s < weights.size(); ++s) {
      worst = std::max(worst, std::abs(static_cast<double>(counts[s]) - static_cast<double>(n) * weights[s] / total));
    }
  }
  EXPECT_LT(worst, 1.0) << "weights of " << weights.size() << " sources";
}

TEST(BlendedDataset, EachShareWithinOneSampleAfterEveryN) {
  expect_shares_within_one({1.0}, 50);
  expect_shares_within_one({0.5, 0.5}, 101);
  expect_shares_within_one({3, 1}, 400);             // unnormalized
  expect_shares_within_one({0.7, 0.2, 0.1}, 1000);
  expect_shares_within_one({1, 0, 2}, 300);          // a zero weight is never drawn
  expect_shares_within_one({1, 1, 1, 1, 1, 1, 1}, 700);
  // Picking the source that lags weight * n the most leaves one of these 1.05 samples behind.
  expect_shares_within_one({1, 1, 20, 100, 100, 200}, 1500);
  std::mt19937_64 engine(42);
  for (int trial = 0; trial < 100; ++trial) {
    std::vector<double> weights(2 + engine() % 7);
    // Cubed uniforms: very unequal weights, where the plain largest-lag rule overshoots.
    for (double& weight : weights) weight = std::pow((engine() % 1000000 + 1) / 1e6, 3);
    expect_shares_within_one(weights, 600);
  }
}

TEST(BlendedDataset, Deterministic) {
  auto first = make_blended_dataset(counting_sources(3, 100), {0.2, 0.3, 0.5}, 100);
  auto second = make_blended_dataset(counting_sources(3, 100), {0.2, 0.3, 0.5}, 100);
  ASSERT_TRUE(first.ok() && second.ok());
  std::vector<int64_t> a(4), b(4);
  for (int64_t i = 0; i < 100; ++i) {
    (*first)->sample(i, a);
    (*second)->sample(i, b);
    EXPECT_EQ(a, b);
  }
}

TEST(BlendedDataset, BadArgumentsAreErrors) {
  EXPECT_FALSE(make_blended_dataset({}, {}, 10).ok());
  EXPECT_FALSE(make_blended_dataset(counting_sources(2, 10), {1.0}, 10).ok());
  EXPECT_FALSE(make_blended_dataset(counting_sources(2, 10), {1.0, -1.0}, 10).ok());
  EXPECT_FALSE(make_blended_dataset(counting_sources(2, 10), {0.0, 0.0}, 10).ok());
  EXPECT_FALSE(make_blended_dataset(counting_sources(2, 10), {1.0, NAN}, 10).ok());
  // Source 1 would need 15 of its 10 samples.
  auto too_small = make_blended_dataset(counting_sources(2, 10), {1.0, 3.0}, 20);
  ASSERT_FALSE(too_small.ok());
  EXPECT_NE(too_small.status().message().find("source 1"), std::string::npos) << too_small.status();
  std::vector<std::shared_ptr<SampleSource>> mixed = {std::make_shared<CountingSource>(0, 10, 3),
                                                      std::make_shared<CountingSource>(1, 10, 4)};
  EXPECT_FALSE(make_blended_dataset(mixed, {1.0, 1.0}, 10).ok());
}

}  // namespace
}  // namespace sy
