// GroupedExperts: the grouped-GEMM experts equal a per-expert loop of plain SwiGLU modules
// on the same weights (outputs and every gradient), and their math (grouped_swiglu) passes
// the op harness: naive reference and finite-difference gradients of x, w1, w2 in f64.
#include <cmath>
#include <numeric>

#include "core/autograd/grad_mode.h"
#include "core/nn/nn.h"
#include "core/ops/ops.h"
#include "moe/experts.h"
#include "tests/support/op_harness.h"

namespace sy::testing {
namespace {

// Naive: every row through its expert's SwiGLU, with w1 (E, C, 2F) and w2 (E, F, C).
HostArray swiglu_reference(const HostArray& x, const HostArray& w1, const HostArray& w2,
                           const std::vector<int64_t>& counts) {
  const int64_t C = x.shape[1], F = w2.shape[1];
  HostArray out{{x.shape[0], C}, std::vector<double>(x.shape[0] * C, 0.0)};
  int64_t row = 0;
  for (size_t e = 0; e < counts.size(); ++e) {
    for (int64_t r = 0; r < counts[e]; ++r, ++row) {
      std::vector<double> hidden(F);
      for (int64_t f = 0; f < F; ++f) {
        double gate = 0, up = 0;
        for (int64_t c = 0; c < C; ++c) {
          gate += x.values[row * C + c] * w1.values[(e * C + c) * 2 * F + f];
          up += x.values[row * C + c] * w1.values[(e * C + c) * 2 * F + F + f];
        }
        hidden[f] = gate / (1 + std::exp(-gate)) * up;
      }
      for (int64_t c = 0; c < C; ++c) {
        double s = 0;
        for (int64_t f = 0; f < F; ++f) s += hidden[f] * w2.values[(e * F + f) * C + c];
        out.values[row * C + c] = s;
      }
    }
  }
  return out;
}

OpCase swiglu_case(std::string name, std::vector<int64_t> counts, int64_t C, int64_t F) {
  const int64_t M = std::accumulate(counts.begin(), counts.end(), int64_t{0});
  const int64_t E = static_cast<int64_t>(counts.size());
  return {.name = std::move(name),
          .inputs = {{.shape = {M, C}}, {.shape = {E, C, 2 * F}}, {.shape = {E, F, C}}},
          .op = [counts](const std::vector<Tensor>& x) { return grouped_swiglu(x[0], x[1], x[2], counts); },
          .reference = [counts](const std::vector<HostArray>& x) {
            return swiglu_reference(x[0], x[1], x[2], counts);
          }};
}

INSTANTIATE_TEST_SUITE_P(GroupedSwiGLU, OpCaseTest,
                         ::testing::ValuesIn(std::vector<OpCase>{
                             swiglu_case("ThreeExpertsOneEmpty", {2, 0, 3}, 3, 2),
                             swiglu_case("SixUnevenExperts", {1, 4, 0, 2, 0, 1}, 2, 3),
                         }),
                         OpCaseName);

// A SwiGLU module holding expert e's slices of w1 and w2 (PyTorch layout: weight (out, in)).
std::shared_ptr<SwiGLU> expert_as_swiglu(const GroupedExperts& experts, int64_t e) {
  const int64_t C = experts.w1().size(1), F = experts.w2().size(1);
  auto mlp = std::make_shared<SwiGLU>(C, F);
  NoGradGuard no_grad;
  Tensor w1 = experts.w1().detach().select(0, e);  // (C, 2F)
  mlp->gate_proj->weight.copy_(w1.narrow(1, 0, F).t());
  mlp->up_proj->weight.copy_(w1.narrow(1, F, F).t());
  mlp->down_proj->weight.copy_(experts.w2().detach().select(0, e).t());
  return mlp;
}

TEST(GroupedExperts, EqualsPerExpertSwiGLULoop) {
  const int64_t E = 5, C = 8, F = 6;
  GroupedExperts experts(E, C, F, 0.3, 0.2);
  const std::vector<int64_t> counts = {3, 0, 7, 1, 4};
  const int64_t M = 15;
  Tensor x = randn({M, C}).set_requires_grad(true);
  Tensor upstream = randn({M, C});
  Tensor out = experts.forward(x, counts);
  sum(out * upstream).backward();

  Tensor x_ref = x.detach().clone().set_requires_grad(true);
  std::vector<std::shared_ptr<SwiGLU>> loop;
  std::vector<Tensor> pieces;
  int64_t start = 0;
  for (int64_t e = 0; e < E; ++e) {
    loop.push_back(expert_as_swiglu(experts, e));
    pieces.push_back(loop.back()->forward(x_ref.narrow(0, start, counts[e])));
    start += counts[e];
  }
  Tensor expected = cat(pieces, 0);
  sum(expected * upstream).backward();

  EXPECT_LT(max_relative_error(out, expected), 1e-5);
  EXPECT_LT(max_relative_error(x.grad(), x_ref.grad()), 1e-5);
  for (int64_t e = 0; e < E; ++e) {
    SCOPED_TRACE(::testing::Message() << "expert " << e);
    Tensor w1_grad = experts.w1().grad().select(0, e), w2_grad = experts.w2().grad().select(0, e);
    if (counts[e] == 0) {
      EXPECT_EQ(sum(abs(w1_grad)).item(), 0.0);
      EXPECT_EQ(sum(abs(w2_grad)).item(), 0.0);
      continue;
    }
    EXPECT_LT(max_relative_error(w1_grad.narrow(1, 0, F), loop[e]->gate_proj->weight.grad().t()), 1e-5);
    EXPECT_LT(max_relative_error(w1_grad.narrow(1, F, F), loop[e]->up_proj->weight.grad().t()), 1e-5);
    EXPECT_LT(max_relative_error(w2_grad, loop[e]->down_proj->weight.grad().t()), 1e-5);
  }
}

TEST(GroupedExperts, ParameterNamesShapesAndInitStd) {
  GroupedExperts experts(16, 32, 24, 0.02, 0.005);
  auto named = experts.named_parameters();
  ASSERT_EQ(named.size(), 2u);
  EXPECT_EQ(named[0].first, "w1");
  EXPECT_EQ(named[0].second.shape(), (Shape{16, 32, 48}));
  EXPECT_EQ(named[1].first, "w2");
  EXPECT_EQ(named[1].second.shape(), (Shape{16, 24, 32}));
  // 24576 and 12288 samples: the std estimates are within a few percent.
  auto std_of = [](const Tensor& w) { return std::sqrt(mean(w * w).item()); };
  EXPECT_NEAR(std_of(experts.w1()), 0.02, 0.001);
  EXPECT_NEAR(std_of(experts.w2()), 0.005, 0.00025);
}

}  // namespace
}  // namespace sy::testing
