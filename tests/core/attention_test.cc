// scaled_dot_product_attention against explicit softmax(q k^T) v: through the op harness on
// tiny shapes with several blocks (finite differences in f64), on T = 70 with the default
// block size, with GQA (Hkv = 1 and Hkv = H), and a backward whose memory stays O(T).
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "core/allocator.h"
#include "core/autograd/grad_mode.h"
#include "core/ops/ops.h"
#include "tests/support/op_harness.h"

namespace sy::testing {
namespace {

// Reference: for each (b, h), the full score matrix, the mask, a row softmax, and the
// weighted sum of v rows; query head h reads kv head h / (H / Hkv).
HostArray attention_reference(const HostArray& q, const HostArray& k, const HostArray& v, bool causal,
                              double scale) {
  const int64_t B = q.shape[0], H = q.shape[1], T = q.shape[2], D = q.shape[3], Hkv = k.shape[1];
  if (scale == 0) scale = 1 / std::sqrt(static_cast<double>(D));
  HostArray out{q.shape, std::vector<double>(q.numel())};
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      const int64_t kv = h / (H / Hkv);
      for (int64_t i = 0; i < T; ++i) {
        std::vector<double> scores(T, -INFINITY);
        double max_score = -INFINITY;
        for (int64_t j = 0; j < T; ++j) {
          if (causal && j > i) continue;
          double dot = 0;
          for (int64_t d = 0; d < D; ++d) dot += q.values[q.index({b, h, i, d})] * k.values[k.index({b, kv, j, d})];
          scores[j] = dot * scale;
          max_score = std::max(max_score, scores[j]);
        }
        double total = 0;
        std::vector<double> weights(T, 0.0);
        for (int64_t j = 0; j < T; ++j) {
          weights[j] = std::exp(scores[j] - max_score);  // exp(-inf) = 0 for masked keys
          total += weights[j];
        }
        for (int64_t d = 0; d < D; ++d) {
          double value = 0;
          for (int64_t j = 0; j < T; ++j) value += weights[j] / total * v.values[v.index({b, kv, j, d})];
          out.values[out.index({b, h, i, d})] = value;
        }
      }
    }
  }
  return out;
}

OpCase attention_case(std::string name, int64_t B, int64_t H, int64_t Hkv, int64_t T, int64_t D, bool causal,
                      int64_t block, double scale = 0.0) {
  return {.name = std::move(name),
          .inputs = {{.shape = {B, H, T, D}, .low = -2, .high = 2},
                     {.shape = {B, Hkv, T, D}, .low = -2, .high = 2},
                     {.shape = {B, Hkv, T, D}}},
          .op = [causal, scale, block](const std::vector<Tensor>& x) {
            return detail::scaled_dot_product_attention(x[0], x[1], x[2], causal, scale, block);
          },
          .reference = [causal, scale](const std::vector<HostArray>& x) {
            return attention_reference(x[0], x[1], x[2], causal, scale);
          }};
}

std::vector<OpCase> attention_cases() {
  return {
      // Blocks of 3 over T = 7: three query and key blocks, the last one ragged.
      attention_case("CausalGqaB2H4Hkv2T7D4Block3", 2, 4, 2, 7, 4, true, 3),
      attention_case("NonCausalGqaB1H4Hkv2T5D4Block2", 1, 4, 2, 5, 4, false, 2),
      attention_case("CausalMqaB1H4Hkv1T6D4Block4", 1, 4, 1, 6, 4, true, 4),
      attention_case("NonCausalMqaB2H4Hkv1T5D4Block3", 2, 4, 1, 5, 4, false, 3),
      attention_case("CausalMhaB1H4Hkv4T6D4Block2", 1, 4, 4, 6, 4, true, 2),
      attention_case("CausalB1H2Hkv2T5D4DefaultBlock", 1, 2, 2, 5, 4, true, 0),
      attention_case("NonCausalScale0p7B1H2Hkv1T7D4Block1", 1, 2, 1, 7, 4, false, 1, 0.7),
  };
}

INSTANTIATE_TEST_SUITE_P(Attention, OpCaseTest, ::testing::ValuesIn(attention_cases()), OpCaseName);

Tensor random_tensor(const Shape& shape, uint64_t seed, DType dtype = DType::kF32) {
  std::vector<double> values(shape_numel(shape));
  uint64_t state = seed;
  for (double& value : values) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    value = static_cast<double>(state >> 11) / static_cast<double>(1ull << 53) * 2 - 1;
  }
  return Tensor::from_vector(values, shape, dtype);
}

TEST(Attention, T70F32DefaultBlockSizeMatchesReference) {
  // T = 70 with 64-row blocks: a full block and a ragged one of 6 rows.
  const int64_t B = 1, H = 4, Hkv = 2, T = 70, D = 16;
  Tensor q = random_tensor({B, H, T, D}, 1), k = random_tensor({B, Hkv, T, D}, 2), v = random_tensor({B, Hkv, T, D}, 3);
  for (bool causal : {true, false}) {
    Tensor out = scaled_dot_product_attention(q, k, v, causal);
    Tensor expected = attention_reference(HostArray::of(q), HostArray::of(k), HostArray::of(v), causal, 0)
                          .to_tensor(DType::kF64);
    EXPECT_LT(max_relative_error(out.to(DType::kF64), expected), 1e-5) << "causal " << causal;
  }
}

TEST(Attention, T70F32GradientsMatchF64AcrossBlocks) {
  // The f32 backward over two 64-row blocks agrees with the f64 one (itself checked against
  // finite differences on the small cases above).
  const int64_t B = 1, H = 2, Hkv = 1, T = 70, D = 8;
  auto gradients = [&](DType dtype) {
    std::vector<Tensor> leaves = {random_tensor({B, H, T, D}, 4, dtype), random_tensor({B, Hkv, T, D}, 5, dtype),
                                  random_tensor({B, Hkv, T, D}, 6, dtype)};
    for (Tensor& leaf : leaves) leaf.set_requires_grad(true);
    Tensor out = scaled_dot_product_attention(leaves[0], leaves[1], leaves[2]);
    out.backward(random_tensor(out.shape(), 7, dtype));
    return std::vector<Tensor>{leaves[0].grad(), leaves[1].grad(), leaves[2].grad()};
  };
  std::vector<Tensor> single = gradients(DType::kF32), twice = gradients(DType::kF64);
  for (int i = 0; i < 3; ++i) {
    EXPECT_LT(max_relative_error(single[i].to(DType::kF64), twice[i]), 1e-5) << "input " << i;
  }
}

TEST(Attention, Bf16ComputesInF32) {
  const int64_t B = 1, H = 2, Hkv = 1, T = 9, D = 8;
  Tensor q = random_tensor({B, H, T, D}, 8, DType::kBF16), k = random_tensor({B, Hkv, T, D}, 9, DType::kBF16);
  Tensor v = random_tensor({B, Hkv, T, D}, 10, DType::kBF16);
  q.set_requires_grad(true);
  Tensor out = scaled_dot_product_attention(q, k, v);
  EXPECT_EQ(out.dtype(), DType::kBF16);
  Tensor expected = scaled_dot_product_attention(q.detach().to(DType::kF32), k.to(DType::kF32), v.to(DType::kF32));
  EXPECT_LT(max_relative_error(out.to(DType::kF64), expected.to(DType::kF64)), 1e-2);
  sum(out.to(DType::kF32)).backward();
  EXPECT_EQ(q.grad().dtype(), DType::kBF16);
  EXPECT_EQ(q.grad().shape(), q.shape());
}

TEST(Attention, BackwardPeakMemoryStaysFarBelowTxT) {
  const int64_t B = 1, H = 4, Hkv = 2, T = 512, D = 16;
  Tensor q = random_tensor({B, H, T, D}, 11).set_requires_grad(true);
  Tensor k = random_tensor({B, Hkv, T, D}, 12).set_requires_grad(true);
  Tensor v = random_tensor({B, Hkv, T, D}, 13).set_requires_grad(true);
  Tensor grad_out = random_tensor({B, H, T, D}, 14);
  const size_t score_matrix_bytes = static_cast<size_t>(T * T * B * H) * sizeof(float);  // 4 MiB

  size_t before = cpu_allocator_stats().current_bytes;
  reset_cpu_peak_stats();
  Tensor out = scaled_dot_product_attention(q, k, v);
  const size_t forward_peak = cpu_allocator_stats().peak_bytes - before;

  before = cpu_allocator_stats().current_bytes;
  reset_cpu_peak_stats();
  out.backward(grad_out);
  const size_t backward_peak = cpu_allocator_stats().peak_bytes - before;
  // Forward: out and lse (~130 KiB); backward: three gradients (~256 KiB).
  EXPECT_LT(forward_peak, score_matrix_bytes / 8) << "forward allocated " << forward_peak << " bytes";
  EXPECT_LT(backward_peak, score_matrix_bytes / 8) << "backward allocated " << backward_peak << " bytes";
  EXPECT_GT(backward_peak, 0u) << "the gradients themselves were not counted";
}

TEST(Attention, HeadsNotDivisibleByKvHeadsNamesShapes) {
  try {
    scaled_dot_product_attention(Tensor::zeros({1, 3, 4, 8}), Tensor::zeros({1, 2, 4, 8}), Tensor::zeros({1, 2, 4, 8}));
    FAIL() << "expected a shape error";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("(1, 3, 4, 8)"), std::string::npos) << error.what();
  }
}

}  // namespace
}  // namespace sy::testing
