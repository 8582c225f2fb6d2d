// grouped_matmul through the op harness (naive per-row reference, finite differences in
// f64) on zero-count groups, one group, 16 uneven groups and a transposed weight view; both
// threading paths (BLAS threads / one group per core) against per-group matmul; bf16.
#include <numeric>

#include "core/ops/ops.h"
#include "tests/support/op_harness.h"

namespace sy::testing {
namespace {

// out[r] = x[r] @ w[group of r], written as plain loops over the rows.
HostArray grouped_reference(const HostArray& x, const HostArray& w, const std::vector<int64_t>& counts) {
  const int64_t N = x.shape[0], Cin = x.shape[1], Cout = w.shape[2];
  HostArray out{{N, Cout}, std::vector<double>(N * Cout, 0.0)};
  int64_t row = 0;
  for (size_t e = 0; e < counts.size(); ++e) {
    for (int64_t r = 0; r < counts[e]; ++r, ++row) {
      for (int64_t j = 0; j < Cout; ++j) {
        double s = 0;
        for (int64_t i = 0; i < Cin; ++i) s += x.values[row * Cin + i] * w.values[(e * Cin + i) * Cout + j];
        out.values[row * Cout + j] = s;
      }
    }
  }
  return out;
}

OpCase grouped_case(std::string name, std::vector<int64_t> counts, int64_t Cin, int64_t Cout) {
  const int64_t N = std::accumulate(counts.begin(), counts.end(), int64_t{0});
  const int64_t E = static_cast<int64_t>(counts.size());
  return {.name = std::move(name),
          .inputs = {{.shape = {N, Cin}}, {.shape = {E, Cin, Cout}}},
          .op = [counts](const std::vector<Tensor>& x) { return grouped_matmul(x[0], x[1], counts); },
          .reference = [counts](const std::vector<HostArray>& x) {
            return grouped_reference(x[0], x[1], counts);
          }};
}

std::vector<OpCase> grouped_matmul_cases() {
  const std::vector<int64_t> uneven16 = {3, 0, 1, 5, 0, 0, 2, 7, 1, 1, 0, 4, 2, 0, 6, 1};
  std::vector<OpCase> cases = {
      grouped_case("TwoGroups", {2, 3}, 4, 3),
      grouped_case("ZeroCountGroups", {0, 3, 0, 2, 0}, 3, 5),
      grouped_case("OneGroup", {5}, 4, 2),
      grouped_case("E16UnevenCounts", uneven16, 3, 4),
  };
  // dx runs the forward on w^T: the same op must read a transposed view of w directly.
  cases.push_back({.name = "TransposedWeightView",
                   .inputs = {{.shape = {6, 3}}, {.shape = {3, 5, 3}}},
                   .op = [](const std::vector<Tensor>& x) {
                     return grouped_matmul(x[0], x[1].transpose(1, 2), {2, 1, 3});
                   },
                   .reference = [](const std::vector<HostArray>& x) {
                     HostArray wt{{3, 3, 5}, std::vector<double>(45)};
                     for (int e = 0; e < 3; ++e) {
                       for (int i = 0; i < 5; ++i) {
                         for (int j = 0; j < 3; ++j) wt.values[(e * 3 + j) * 5 + i] = x[1].values[(e * 5 + i) * 3 + j];
                       }
                     }
                     return grouped_reference(x[0], wt, {2, 1, 3});
                   }});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(GroupedMatmul, OpCaseTest, ::testing::ValuesIn(grouped_matmul_cases()), OpCaseName);

// grouped_matmul and its gradients equal one matmul per group (f32, autograd through both).
void check_against_per_group_matmul(const std::vector<int64_t>& counts, int64_t Cin, int64_t Cout) {
  const int64_t E = static_cast<int64_t>(counts.size());
  const int64_t N = std::accumulate(counts.begin(), counts.end(), int64_t{0});
  Tensor x = randn({N, Cin}).set_requires_grad(true);
  Tensor w = randn({E, Cin, Cout}).set_requires_grad(true);
  Tensor upstream = randn({N, Cout});
  Tensor out = grouped_matmul(x, w, counts);
  sum(out * upstream).backward();

  Tensor x_ref = x.detach().clone().set_requires_grad(true);
  Tensor w_ref = w.detach().clone().set_requires_grad(true);
  std::vector<Tensor> pieces;
  int64_t start = 0;
  for (int64_t e = 0; e < E; ++e) {
    pieces.push_back(matmul(x_ref.narrow(0, start, counts[e]), w_ref.select(0, e)));
    start += counts[e];
  }
  sum(cat(pieces, 0) * upstream).backward();

  EXPECT_LT(max_relative_error(out, cat(pieces, 0).detach()), 1e-5);
  EXPECT_LT(max_relative_error(x.grad(), x_ref.grad()), 1e-5);
  for (int64_t e = 0; e < E; ++e) {
    Tensor grad = w.grad().select(0, e);
    if (counts[e] == 0) {
      EXPECT_EQ(sum(abs(grad)).item(), 0.0) << "empty group " << e << " has a gradient";
    } else {
      EXPECT_LT(max_relative_error(grad, w_ref.grad().select(0, e)), 1e-5) << "group " << e;
    }
  }
}

// Groups large enough that BLAS threads each product, one after another.
TEST(GroupedMatmul, LargeGroupsMatchPerGroupMatmul) { check_against_per_group_matmul({130, 0, 97}, 96, 112); }

// Many mid-sized groups (fine-grained experts): one group per core.
TEST(GroupedMatmul, ManySmallGroupsAcrossCoresMatchPerGroupMatmul) {
  check_against_per_group_matmul({20, 31, 0, 17, 25, 9, 40, 0, 22, 18, 27, 3, 33, 12, 0, 24}, 64, 48);
}

// bf16 inputs are computed in f32 and rounded once: within bf16 precision of the f32 result.
TEST(GroupedMatmul, Bf16ComputedInF32) {
  const std::vector<int64_t> counts = {4, 0, 7};
  Tensor x = randn({11, 8});
  Tensor w = randn({3, 8, 5});
  Tensor expected = grouped_matmul(x.to(DType::kBF16).to(DType::kF32), w.to(DType::kBF16).to(DType::kF32), counts);
  Tensor xb = x.to(DType::kBF16).set_requires_grad(true);
  Tensor wb = w.to(DType::kBF16).set_requires_grad(true);
  Tensor out = grouped_matmul(xb, wb, counts);
  ASSERT_EQ(out.dtype(), DType::kBF16);
  EXPECT_LT(max_relative_error(out.to(DType::kF32), expected), 1e-2);
  sum(out).backward();
  EXPECT_EQ(xb.grad().dtype(), DType::kBF16);
  EXPECT_EQ(wb.grad().dtype(), DType::kBF16);
}

}  // namespace
}  // namespace sy::testing
