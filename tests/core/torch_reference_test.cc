// Our softmax, norms, cross-entropy and attention against PyTorch on the same f64 inputs: forward and
// the gradients of sum(out * upstream) from torch autograd (scripts in tests/reference/).
#include <random>

#include "core/ops/ops.h"
#include "tests/support/op_harness.h"
#include "tests/support/torch_reference.h"

namespace sy::testing {
namespace {

constexpr double kTolerance = 1e-10;

Tensor uniform_tensor(const Shape& shape, uint64_t seed, double low = -2, double high = 2) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> uniform(low, high);
  std::vector<double> values(shape_numel(shape));
  for (double& v : values) v = uniform(rng);
  return Tensor::from_vector(values, shape, DType::kF64);
}

Tensor leaf(const Tensor& values) { return values.detach().clone().set_requires_grad(true); }

Tensor integer(int64_t value) { return Tensor::scalar(static_cast<double>(value), DType::kI64); }

// Our results for one case, by the output names the script writes.
using Ours = std::map<std::string, Tensor>;

// Runs the script over every case and compares each named output with ours.
void compare_with_torch(const std::string& script, const std::vector<TorchCase>& cases,
                        const std::vector<Ours>& ours) {
  absl::StatusOr<std::vector<TorchOutputs>> torch = run_torch_reference(script, cases);
  ASSERT_TRUE(torch.ok()) << torch.status();
  for (size_t index = 0; index < cases.size(); ++index) {
    for (const std::string& name : cases[index].outputs) {
      SCOPED_TRACE(absl::StrCat(script, " case ", index, " ", name));
      const Tensor& mine = ours[index].at(name);
      ASSERT_TRUE(mine.defined()) << "no gradient";
      EXPECT_LT(max_relative_error(mine.to(DType::kF64), (*torch)[index].at(name)), kTolerance)
          << "ours  " << mine << "\ntorch " << (*torch)[index].at(name);
    }
  }
}

TEST(TorchReference, NpyRoundTripKeepsShapeAndValues) {
  std::string path = ::testing::TempDir() + "sy_npy_round_trip.npy";
  Tensor x = uniform_tensor({2, 3, 4}, 1);
  ASSERT_TRUE(write_npy(path, x).ok());
  absl::StatusOr<Tensor> back = read_npy(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->shape(), x.shape());
  EXPECT_EQ(back->to_vector<double>(), x.to_vector<double>());
  ASSERT_TRUE(write_npy(path, Tensor::scalar(7, DType::kI32)).ok());
  back = read_npy(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->dim(), 0);
  EXPECT_EQ(back->dtype(), DType::kI64);
  EXPECT_EQ(back->item(), 7);
}

TEST(TorchReference, SoftmaxAndLogSoftmax) {
  SY_REQUIRE_TORCH();
  std::vector<TorchCase> cases;
  std::vector<Ours> ours;
  for (bool log : {false, true}) {
    for (int64_t dim : {-1, 1, 0}) {
      Tensor x = leaf(uniform_tensor({3, 5, 7}, 2 + dim, -4, 4));
      Tensor upstream = uniform_tensor({3, 5, 7}, 3);
      Tensor y = log ? log_softmax(x, dim) : softmax(x, dim);
      sum(y * upstream).backward();
      cases.push_back({{{"x", x}, {"upstream", upstream}, {"dim", integer(dim)}, {"log", integer(log)}},
                       {"y", "grad_x"}});
      ours.push_back({{"y", y}, {"grad_x", x.grad()}});
    }
  }
  compare_with_torch("softmax.py", cases, ours);
}

TEST(TorchReference, RmsNorm) {
  SY_REQUIRE_TORCH();
  std::vector<TorchCase> cases;
  std::vector<Ours> ours;
  for (double eps : {1e-6, 1e-2}) {
    Tensor x = leaf(uniform_tensor({2, 3, 16}, 4));
    Tensor weight = leaf(uniform_tensor({16}, 5, 0.5, 1.5));
    Tensor upstream = uniform_tensor({2, 3, 16}, 6);
    Tensor y = rms_norm(x, weight, eps);
    sum(y * upstream).backward();
    cases.push_back({{{"x", x}, {"weight", weight}, {"upstream", upstream}, {"eps", Tensor::scalar(eps, DType::kF64)}},
                     {"y", "grad_x", "grad_weight"}});
    ours.push_back({{"y", y}, {"grad_x", x.grad()}, {"grad_weight", weight.grad()}});
  }
  compare_with_torch("rms_norm.py", cases, ours);
}

TEST(TorchReference, LayerNorm) {
  SY_REQUIRE_TORCH();
  std::vector<TorchCase> cases;
  std::vector<Ours> ours;
  for (bool with_bias : {true, false}) {
    Tensor x = leaf(uniform_tensor({4, 3, 12}, 7, -1, 3));
    Tensor weight = leaf(uniform_tensor({12}, 8));
    Tensor bias = with_bias ? leaf(uniform_tensor({12}, 9)) : Tensor();
    Tensor upstream = uniform_tensor({4, 3, 12}, 10);
    const double eps = 1e-5;
    Tensor y = layer_norm(x, weight, bias, eps);
    sum(y * upstream).backward();
    TorchCase c{{{"x", x}, {"weight", weight}, {"upstream", upstream}, {"eps", Tensor::scalar(eps, DType::kF64)}},
                {"y", "grad_x", "grad_weight"}};
    Ours mine{{"y", y}, {"grad_x", x.grad()}, {"grad_weight", weight.grad()}};
    if (with_bias) {
      c.inputs["bias"] = bias;
      c.outputs.push_back("grad_bias");
      mine["grad_bias"] = bias.grad();
    }
    cases.push_back(c);
    ours.push_back(mine);
  }
  compare_with_torch("layer_norm.py", cases, ours);
}

TEST(TorchReference, CrossEntropyWithIgnoreIndexAndLabelSmoothing) {
  SY_REQUIRE_TORCH();
  struct Setting {
    Reduction reduction;
    int64_t reduction_code;  // as cross_entropy.py numbers them
    double label_smoothing;
    int64_t ignore_index;
  };
  const int64_t N = 6, V = 11;
  std::vector<TorchCase> cases;
  std::vector<Ours> ours;
  for (const Setting& s : {Setting{Reduction::kMean, 0, 0.0, -100}, Setting{Reduction::kMean, 0, 0.1, -100},
                           Setting{Reduction::kSum, 1, 0.2, -100}, Setting{Reduction::kNone, 2, 0.15, 4},
                           Setting{Reduction::kMean, 0, 0.3, 4}}) {
    Tensor logits = leaf(uniform_tensor({N, V}, 11, -3, 3));
    std::vector<int64_t> t = {3, s.ignore_index, 10, 0, 4, s.ignore_index == 4 ? 7 : -100};
    Tensor targets = Tensor::from_vector(t, {N}, DType::kI64);
    CrossEntropyOptions options{.ignore_index = s.ignore_index, .label_smoothing = s.label_smoothing,
                                .reduction = s.reduction};
    Tensor loss = cross_entropy(logits, targets, options);
    Tensor upstream = s.reduction == Reduction::kNone ? uniform_tensor({N}, 12) : Tensor::scalar(0.7, DType::kF64);
    sum(loss * upstream).backward();
    cases.push_back({{{"logits", logits},
                      {"targets", targets},
                      {"upstream", upstream},
                      {"ignore_index", integer(s.ignore_index)},
                      {"label_smoothing", Tensor::scalar(s.label_smoothing, DType::kF64)},
                      {"reduction", integer(s.reduction_code)}},
                     {"loss", "grad_logits"}});
    ours.push_back({{"loss", loss}, {"grad_logits", logits.grad()}});
  }
  compare_with_torch("cross_entropy.py", cases, ours);
}

TEST(TorchReference, ScaledDotProductAttentionCausalAndGqa) {
  SY_REQUIRE_TORCH();
  struct Setting {
    int64_t B, H, Hkv, T, D;
    bool causal;
    double scale;  // 0: 1/sqrt(D)
  };
  std::vector<TorchCase> cases;
  std::vector<Ours> ours;
  uint64_t seed = 20;
  for (const Setting& s : {Setting{2, 4, 2, 6, 3, true, 0.0}, Setting{1, 4, 1, 5, 4, true, 0.0},
                           Setting{2, 2, 2, 4, 5, false, 0.0}, Setting{1, 6, 3, 7, 2, true, 0.8}}) {
    Tensor q = leaf(uniform_tensor({s.B, s.H, s.T, s.D}, ++seed));
    Tensor k = leaf(uniform_tensor({s.B, s.Hkv, s.T, s.D}, ++seed));
    Tensor v = leaf(uniform_tensor({s.B, s.Hkv, s.T, s.D}, ++seed));
    Tensor upstream = uniform_tensor({s.B, s.H, s.T, s.D}, ++seed);
    Tensor out = scaled_dot_product_attention(q, k, v, s.causal, s.scale);
    sum(out * upstream).backward();
    cases.push_back({{{"q", q},
                      {"k", k},
                      {"v", v},
                      {"upstream", upstream},
                      {"causal", integer(s.causal)},
                      {"scale", Tensor::scalar(s.scale, DType::kF64)}},
                     {"out", "grad_q", "grad_k", "grad_v"}});
    ours.push_back({{"out", out}, {"grad_q", q.grad()}, {"grad_k", k.grad()}, {"grad_v", v.grad()}});
  }
  compare_with_torch("attention.py", cases, ours);
}

}  // namespace
}  // namespace sy::testing
