// Philox against the Random123 known answers, the generator's reproducibility, the
// statistics of rand/randn/normal_/uniform_, and dropout (harness case + mask checks).
#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/ops/ops.h"
#include "core/random.h"
#include "tests/support/op_harness.h"

namespace sy::testing {
namespace {

// philox4x32_10(seed, counter, subsequence) packs the Random123 counter words as
// (lo counter, hi counter, lo subsequence, hi subsequence) and the key as (lo seed, hi seed).
Philox4 philox_words(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1) {
  auto join = [](uint32_t lo, uint32_t hi) { return (static_cast<uint64_t>(hi) << 32) | lo; };
  return philox4x32_10(join(k0, k1), join(c0, c1), join(c2, c3));
}

void expect_words(Philox4 got, std::array<uint32_t, 4> expected) {
  for (int i = 0; i < 4; ++i) EXPECT_EQ(got.x[i], expected[i]) << "word " << i << std::hex << " got " << got.x[i];
}

TEST(Philox, MatchesRandom123KnownAnswers) {
  expect_words(philox_words(0, 0, 0, 0, 0, 0), {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8});
  expect_words(philox_words(0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff),
               {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd});
  expect_words(philox_words(0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0),
               {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1});
}

TEST(Philox, StreamIndexReadsFourWordsPerCounter) {
  PhiloxState state{0x1234, 10};
  for (uint64_t index : {0u, 3u, 4u, 9u}) {
    EXPECT_EQ(philox_uint32(state, index), philox4x32_10(0x1234, 10 + index / 4, 0).x[index % 4]);
  }
}

TEST(Generator, SameSeedAndOffsetReproduce) {
  Generator first(42), second(42);
  Tensor a = rand({100}, DType::kF32, &first);
  Tensor b = rand({100}, DType::kF32, &first);
  EXPECT_NE(a.to_vector<float>(), b.to_vector<float>()) << "consecutive draws must differ";
  EXPECT_EQ(rand({100}, DType::kF32, &second).to_vector<float>(), a.to_vector<float>());
  Generator other_seed(43);
  EXPECT_NE(rand({100}, DType::kF32, &other_seed).to_vector<float>(), a.to_vector<float>());
}

TEST(Generator, EachDrawReservesItsValues) {
  Generator generator(7);
  rand({10}, DType::kF32, &generator);  // 10 values: 3 counters
  EXPECT_EQ(generator.state(), (PhiloxState{7, 3}));
  randn({3, 4}, DType::kF64, &generator);
  EXPECT_EQ(generator.state(), (PhiloxState{7, 6}));
}

TEST(Generator, StateRoundTripReplaysDraws) {
  Generator generator(5);
  rand({7}, DType::kF32, &generator);
  PhiloxState saved = generator.state();
  Tensor normal = randn({33}, DType::kF32, &generator);
  Tensor dropped = dropout(Tensor::ones({50}), 0.5, true, &generator);
  generator.set_state(saved);
  EXPECT_EQ(randn({33}, DType::kF32, &generator).to_vector<float>(), normal.to_vector<float>());
  EXPECT_EQ(dropout(Tensor::ones({50}), 0.5, true, &generator).to_vector<float>(), dropped.to_vector<float>());
}

TEST(Generator, NullUsesTheDefaultGenerator) {
  manual_seed(11);
  Tensor a = rand({8});
  Generator same(11);
  EXPECT_EQ(rand({8}, DType::kF32, &same).to_vector<float>(), a.to_vector<float>());
}

struct Moments {
  double mean = 0, variance = 0;
};
Moments moments_of(const Tensor& x) {
  std::vector<double> values = x.to_vector<double>();
  Moments m;
  for (double v : values) m.mean += v;
  m.mean /= static_cast<double>(values.size());
  for (double v : values) m.variance += (v - m.mean) * (v - m.mean);
  m.variance /= static_cast<double>(values.size() - 1);
  return m;
}

// Bounds are about six standard errors for 200000 samples.
TEST(Random, RandIsUniformOnZeroOne) {
  Generator generator(1);
  Tensor x = rand({200000}, DType::kF32, &generator);
  Moments m = moments_of(x);
  EXPECT_NEAR(m.mean, 0.5, 0.004);
  EXPECT_NEAR(m.variance, 1.0 / 12.0, 0.001);
  std::vector<float> values = x.to_vector<float>();
  EXPECT_GE(*std::min_element(values.begin(), values.end()), 0.0f);
  EXPECT_LT(*std::max_element(values.begin(), values.end()), 1.0f);
}

TEST(Random, RandInBf16AndF16StaysBelowOne) {
  Generator generator(2);
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    std::vector<float> values = rand({100000}, dtype, &generator).to_vector<float>();
    EXPECT_LT(*std::max_element(values.begin(), values.end()), 1.0f) << dtype_name(dtype);
    EXPECT_GE(*std::min_element(values.begin(), values.end()), 0.0f) << dtype_name(dtype);
  }
}

TEST(Random, RandnIsStandardNormal) {
  Generator generator(3);
  Tensor x = randn({200000}, DType::kF64, &generator);
  Moments m = moments_of(x);
  EXPECT_NEAR(m.mean, 0.0, 0.014);
  EXPECT_NEAR(m.variance, 1.0, 0.02);
  std::vector<double> values = x.to_vector<double>();
  double within_one = 0;
  for (double v : values) within_one += std::abs(v) < 1.0;
  EXPECT_NEAR(within_one / static_cast<double>(values.size()), 0.682689, 0.007);
}

TEST(Random, RandnUsesTheDocumentedStreamIndices) {
  // Element i: Box-Muller of u[2 (i / 2)] and u[2 (i / 2) + 1], cos for even i, sin for odd.
  Generator generator(9);
  PhiloxState start = generator.state();
  std::vector<double> values = randn({5}, DType::kF64, &generator).to_vector<double>();
  for (int64_t i = 0; i < 5; ++i) {
    double u1 = philox_uniform(start, 2 * (i / 2)), u2 = philox_uniform(start, 2 * (i / 2) + 1);
    double radius = std::sqrt(-2 * std::log(1 - u1)), angle = 2 * std::numbers::pi * u2;
    EXPECT_DOUBLE_EQ(values[i], radius * (i % 2 == 0 ? std::cos(angle) : std::sin(angle))) << i;
  }
}

TEST(Random, NormalAndUniformFillInPlace) {
  Generator generator(4);
  Tensor x = Tensor::empty({400, 500});
  uint64_t version = x.version();
  normal_(x, 3.0, 2.0, &generator);
  EXPECT_GT(x.version(), version);
  Moments m = moments_of(x);
  EXPECT_NEAR(m.mean, 3.0, 0.03);
  EXPECT_NEAR(std::sqrt(m.variance), 2.0, 0.03);
  uniform_(x, -2.0, 5.0, &generator);
  std::vector<float> values = x.to_vector<float>();
  EXPECT_GE(*std::min_element(values.begin(), values.end()), -2.0f);
  EXPECT_LT(*std::max_element(values.begin(), values.end()), 5.0f);
  EXPECT_NEAR(moments_of(x).mean, 1.5, 0.03);
}

TEST(Random, InPlaceFillOfAStridedViewFollowsLogicalOrder) {
  Generator a(8), b(8);
  Tensor base = Tensor::zeros({3, 4});
  Tensor view = base.t();  // (4, 3), non-contiguous
  uniform_(view, 0.0, 1.0, &a);
  EXPECT_EQ(view.to_vector<float>(), rand({4, 3}, DType::kF32, &b).to_vector<float>());
}

OpCase dropout_case(std::string name, Shape shape, double p, uint64_t seed) {
  return {.name = std::move(name),
          .inputs = {{.shape = shape}},
          .op = [p, seed](const std::vector<Tensor>& x) {
            Generator generator(seed);  // the same mask on every call
            return dropout(x[0], p, true, &generator);
          },
          .reference = [p, seed](const std::vector<HostArray>& x) {
            HostArray out = x[0];
            for (int64_t i = 0; i < out.numel(); ++i) {
              bool keep = philox_uniform(PhiloxState{seed, 0}, i) >= p;
              out.values[i] = keep ? out.values[i] / (1 - p) : 0.0;
            }
            return out;
          }};
}

INSTANTIATE_TEST_SUITE_P(Random, OpCaseTest,
                         ::testing::Values(dropout_case("DropoutHalf", {4, 5}, 0.5, 17),
                                           dropout_case("DropoutTenth3d", {2, 3, 4}, 0.1, 99)),
                         OpCaseName);

TEST(Dropout, ZeroesAboutAFractionPAndScalesTheRest) {
  Generator generator(12);
  const double p = 0.3;
  Tensor x = Tensor::full({100000}, 2.0);
  std::vector<float> values = dropout(x, p, true, &generator).to_vector<float>();
  double zeroed = 0;
  for (float v : values) {
    if (v == 0) {
      ++zeroed;
    } else {
      EXPECT_FLOAT_EQ(v, 2.0f / 0.7f);
    }
  }
  EXPECT_NEAR(zeroed / static_cast<double>(values.size()), p, 0.008);
}

TEST(Dropout, BackwardUsesTheForwardMask) {
  Generator generator(13);
  Tensor x = (rand({64, 32}, DType::kF64, &generator) + 0.5).detach();
  x.set_requires_grad(true);
  Tensor y = dropout(x, 0.4, true, &generator);
  // Draw again so that a regenerated (rather than saved) mask would come out different.
  rand({64, 32}, DType::kF64, &generator);
  Tensor weights = rand({64, 32}, DType::kF64, &generator);
  sum(y * weights).backward();
  std::vector<double> out = y.to_vector<double>(), grad = x.grad().to_vector<double>(),
                      w = weights.to_vector<double>();
  int64_t kept = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    bool keep = out[i] != 0;
    kept += keep;
    EXPECT_DOUBLE_EQ(grad[i], keep ? w[i] / 0.6 : 0.0) << i;
  }
  EXPECT_GT(kept, 0);
  EXPECT_LT(kept, static_cast<int64_t>(out.size()));
}

TEST(Dropout, IdentityInEvalAndForZeroP) {
  Generator generator(14);
  Tensor x = randn({10}, DType::kF32, &generator);
  PhiloxState before = generator.state();
  EXPECT_TRUE(dropout(x, 0.5, false, &generator).same(x));
  EXPECT_TRUE(dropout(x, 0.0, true, &generator).same(x));
  EXPECT_EQ(generator.state(), before) << "identity dropout draws nothing";
  std::vector<float> all_dropped = dropout(x, 1.0, true, &generator).to_vector<float>();
  EXPECT_EQ(all_dropped, std::vector<float>(10, 0.0f));
}

}  // namespace
}  // namespace sy::testing
