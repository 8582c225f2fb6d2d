// The autograd engine: seeding, accumulation, graph reuse, saved-tensor version checks,
// grad mode, leaf hooks, gradients through views, and which outputs carry a grad_fn.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/allocator.h"
#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/ops/ops.h"

namespace sy {
namespace {

Tensor leaf(const std::vector<double>& values, const Shape& shape) {
  Tensor x = Tensor::from_vector(values, shape, DType::kF64);
  x.set_requires_grad(true);
  return x;
}

std::vector<double> values(const Tensor& x) { return x.to_vector<double>(); }

// The message of the sy::Error that `body` throws ("" when it throws none).
template <typename Body>
std::string error_message(Body body) {
  try {
    body();
  } catch (const Error& error) {
    return error.what();
  }
  return "";
}

::testing::AssertionResult contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\" does not contain \"" << part << "\"";
}

TEST(Autograd, BackwardOfScalarSeedsOne) {
  Tensor x = leaf({1, -2, 3}, {3});
  Tensor loss = sum(x * x);
  loss.backward();
  EXPECT_EQ(values(x.grad()), (std::vector<double>{2, -4, 6}));
}

TEST(Autograd, BackwardWithExplicitGradient) {
  Tensor x = leaf({1, 2, 3, 4}, {2, 2});
  Tensor y = x * 3.0;
  y.backward(Tensor::from_vector(std::vector<double>{1, 0, -1, 0.5}, {2, 2}, DType::kF64));
  EXPECT_EQ(values(x.grad()), (std::vector<double>{3, 0, -3, 1.5}));
}

TEST(Autograd, NonScalarRootWithoutGradientThrows) {
  Tensor x = leaf({1, 2}, {2});
  Tensor y = x * 2.0;
  EXPECT_TRUE(contains(error_message([&] { y.backward(); }), "non-scalar root"));
}

TEST(Autograd, LeafGradAccumulatesAcrossBackwards) {
  Tensor x = leaf({1, 2}, {2});
  sum(x * x).backward();
  sum(x * 10.0).backward();
  EXPECT_EQ(values(x.grad()), (std::vector<double>{2 + 10, 4 + 10}));
}

TEST(Autograd, TensorUsedTwiceGetsSummedGradient) {
  // loss = sum(x * x + exp(x)): x feeds MulBackward twice and ExpBackward once.
  Tensor x = leaf({0.5, -1}, {2});
  Tensor loss = sum(x * x + exp(x));
  loss.backward();
  std::vector<double> grad = values(x.grad());
  EXPECT_DOUBLE_EQ(grad[0], 2 * 0.5 + std::exp(0.5));
  EXPECT_DOUBLE_EQ(grad[1], 2 * -1.0 + std::exp(-1.0));
}

TEST(Autograd, IntermediateUsedTwiceGetsSummedGradient) {
  // y = 3x is used by two branches: loss = sum(y * y) + sum(2 y); dloss/dx = 3 (2y + 2).
  Tensor x = leaf({1, 2}, {2});
  Tensor y = x * 3.0;
  Tensor loss = sum(y * y) + sum(y * 2.0);
  loss.backward();
  EXPECT_EQ(values(x.grad()), (std::vector<double>{3 * (2 * 3 + 2), 3 * (2 * 6 + 2)}));
}

TEST(Autograd, RetainGraphAllowsSecondBackward) {
  Tensor x = leaf({0.0, 1.0}, {2});
  Tensor loss = sum(exp(x));
  loss.backward(Tensor(), /*retain_graph=*/true);
  loss.backward();
  std::vector<double> grad = values(x.grad());
  EXPECT_DOUBLE_EQ(grad[0], 2.0);
  EXPECT_DOUBLE_EQ(grad[1], 2.0 * std::exp(1.0));
}

TEST(Autograd, SecondBackwardWithoutRetainGraphThrows) {
  Tensor x = leaf({0.0, 1.0}, {2});
  Tensor loss = sum(exp(x));
  loss.backward();
  EXPECT_TRUE(contains(error_message([&] { loss.backward(); }), "second time"));
}

TEST(Autograd, SavedTensorModifiedInPlaceThrowsAtBackward) {
  // exp saves its output; changing it afterwards would make the gradient silently wrong.
  Tensor x = leaf({0.0, 1.0}, {2});
  Tensor y = exp(x);
  Tensor loss = sum(y);
  {
    NoGradGuard no_grad;
    y.mul_(2.0);
  }
  EXPECT_TRUE(contains(error_message([&] { loss.backward(); }), "modified in place"));
}

TEST(Autograd, SavedInputModifiedThroughAViewThrows) {
  // mul saves its inputs; a write through a view bumps the shared version counter.
  Tensor w = leaf({1, 2, 3}, {3});
  Tensor c = Tensor::from_vector(std::vector<double>{4, 5, 6}, {3}, DType::kF64);
  Tensor loss = sum(w * c);
  c.narrow(0, 1, 1).fill_(0.0);
  EXPECT_TRUE(contains(error_message([&] { loss.backward(); }), "modified in place"));
}

TEST(Autograd, InPlaceOnLeafRequiringGradThrows) {
  Tensor x = leaf({1, 2}, {2});
  EXPECT_TRUE(contains(error_message([&] { x.fill_(0.0); }), "a leaf"));
  EXPECT_THROW(x.add_(Tensor::ones({2}, DType::kF64)), Error);
  EXPECT_THROW(x.mul_(2.0), Error);
  EXPECT_THROW(x.copy_(Tensor::zeros({2}, DType::kF64)), Error);
  EXPECT_EQ(values(x), (std::vector<double>{1, 2}));
  {
    NoGradGuard no_grad;  // an optimizer step
    x.add_(Tensor::ones({2}, DType::kF64), -0.5);
  }
  EXPECT_EQ(values(x), (std::vector<double>{0.5, 1.5}));
}

TEST(Autograd, InPlaceOnAViewOfALeafOrAGraphIntermediateThrows) {
  // Not recorded by autograd, so either would silently give wrong gradients.
  Tensor x = leaf({1, 2}, {2});
  EXPECT_TRUE(contains(error_message([&] { x.narrow(0, 0, 1).fill_(5.0); }), "in-place"));
  Tensor y = x * 2.0;
  EXPECT_TRUE(contains(error_message([&] { y.mul_(3.0); }), "part of a graph"));
  EXPECT_EQ(values(x), (std::vector<double>{1, 2}));
}

TEST(Autograd, NoGradGuardStopsRecordingAndRestores) {
  Tensor x = leaf({1, 2}, {2});
  {
    NoGradGuard no_grad;
    Tensor y = exp(x) * 2.0;
    EXPECT_FALSE(y.requires_grad());
    EXPECT_EQ(y.grad_fn(), nullptr);
    {
      NoGradGuard nested;
    }
    EXPECT_FALSE(GradMode::enabled());  // the nested guard restores "off", not "on"
    {
      EnableGradGuard enable;
      EXPECT_NE((x * 2.0).grad_fn(), nullptr);
    }
    EXPECT_EQ((x * 2.0).grad_fn(), nullptr);
  }
  EXPECT_TRUE(GradMode::enabled());
  Tensor z = x * 2.0;
  ASSERT_NE(z.grad_fn(), nullptr);
  EXPECT_EQ(z.grad_fn()->name(), "MulBackward");
}

TEST(Autograd, PostAccumulateHookFiresOncePerBackwardWithAccumulatedGrad) {
  Tensor w = leaf({1, 2}, {2});
  std::vector<std::vector<double>> seen;
  w.register_post_accumulate_grad_hook([&](Tensor& leaf) { seen.push_back(values(leaf.grad())); });
  // w is used three times; the hook sees the sum, once.
  Tensor loss = sum(w * w) + sum(w * 3.0);
  loss.backward();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], (std::vector<double>{2 + 3, 4 + 3}));
  // A second backward fires it again, with .grad() accumulated over both.
  sum(w * 10.0).backward();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1], (std::vector<double>{5 + 10, 7 + 10}));
}

TEST(Autograd, HookFiresForEachLeafOfTheGraph) {
  Tensor a = leaf({1}, {1}), b = leaf({2}, {1}), unused = leaf({3}, {1});
  int a_calls = 0, b_calls = 0, unused_calls = 0;
  a.register_post_accumulate_grad_hook([&](Tensor&) { ++a_calls; });
  b.register_post_accumulate_grad_hook([&](Tensor&) { ++b_calls; });
  unused.register_post_accumulate_grad_hook([&](Tensor&) { ++unused_calls; });
  sum(a * b).backward();
  EXPECT_EQ(a_calls, 1);
  EXPECT_EQ(b_calls, 1);
  EXPECT_EQ(unused_calls, 0);
}

TEST(Autograd, GradientThroughNarrow) {
  // x (2, 3); loss = sum(x[:, 1:3] * c) puts c in the window and zeros elsewhere.
  Tensor x = leaf({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor c = Tensor::from_vector(std::vector<double>{10, 20, 30, 40}, {2, 2}, DType::kF64);
  sum(x.narrow(1, 1, 2) * c).backward();
  EXPECT_EQ(values(x.grad()), (std::vector<double>{0, 10, 20, 0, 30, 40}));
}

TEST(Autograd, GradientThroughTranspose) {
  // loss = sum(x^T * c) with c (3, 2): dloss/dx[i][j] = c[j][i].
  Tensor x = leaf({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor c = Tensor::from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {3, 2}, DType::kF64);
  sum(x.transpose(0, 1) * c).backward();
  EXPECT_EQ(values(x.grad()), (std::vector<double>{1, 3, 5, 2, 4, 6}));
}

TEST(Autograd, GradientThroughExpand) {
  // x (2, 1) expanded to (2, 3): each element's gradient is its row of c summed.
  Tensor x = leaf({1, 2}, {2, 1});
  Tensor c = Tensor::from_vector(std::vector<double>{1, 2, 3, 10, 20, 30}, {2, 3}, DType::kF64);
  sum(x.expand({2, 3}) * c).backward();
  EXPECT_EQ(x.grad().shape(), (Shape{2, 1}));
  EXPECT_EQ(values(x.grad()), (std::vector<double>{6, 60}));
  // Expanding new leading dims sums over them too: (3) -> (2, 3).
  Tensor y = leaf({1, 2, 3}, {3});
  sum(y.expand({2, 3}) * c).backward();
  EXPECT_EQ(values(y.grad()), (std::vector<double>{11, 22, 33}));
}

TEST(Autograd, GradientThroughReshapeViewAndCopy) {
  Tensor c = Tensor::from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {6}, DType::kF64);
  // A reshape that is a view: gradient element i is c[i].
  Tensor x = leaf({0, 0, 0, 0, 0, 0}, {2, 3});
  sum(x.reshape({3, 2}).reshape({6}) * c).backward();
  EXPECT_EQ(values(x.grad()), (std::vector<double>{1, 2, 3, 4, 5, 6}));
  // A reshape of a transpose copies: x^T flattened is x[0][0], x[1][0], x[0][1], ...
  Tensor y = leaf({0, 0, 0, 0, 0, 0}, {2, 3});
  sum(y.t().reshape({6}) * c).backward();
  EXPECT_EQ(values(y.grad()), (std::vector<double>{1, 3, 5, 2, 4, 6}));
}

TEST(Autograd, GradientThroughChainedViews) {
  // select a column of the transpose of a narrowed tensor, then expand it.
  Tensor x = leaf({1, 2, 3, 4, 5, 6, 7, 8}, {2, 4});
  Tensor column = x.narrow(1, 1, 3).t().select(1, 1);  // x[1][1..3], shape (3)
  Tensor c = Tensor::from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3}, DType::kF64);
  sum(column.unsqueeze(0).expand({2, 3}) * c).backward();
  EXPECT_EQ(values(x.grad()), (std::vector<double>{0, 0, 0, 0, 0, 5, 7, 9}));
}

TEST(Autograd, NonFloatingOutputsCarryNoGradFn) {
  Tensor x = leaf({1, 3, 2}, {3});
  Tensor index = argmax(x, 0);
  EXPECT_EQ(index.grad_fn(), nullptr);
  EXPECT_FALSE(index.requires_grad());
  Tensor mask = gt(x, Tensor::scalar(1.5, DType::kF64));
  EXPECT_EQ(mask.grad_fn(), nullptr);
  EXPECT_FALSE(mask.requires_grad());
  Tensor as_int = x.to(DType::kI64);
  EXPECT_EQ(as_int.grad_fn(), nullptr);
  EXPECT_FALSE(as_int.requires_grad());
  // A node with a floating and an integer output: only the floating one is attached.
  Tensor value = Tensor::scalar(3.0, DType::kF64), position = Tensor::scalar(1.0, DType::kI64);
  record("TwoOutputs", {x}, {value, position},
         [](const std::vector<Tensor>& grads) { return std::vector<Tensor>{grads[0].expand({3})}; });
  EXPECT_NE(value.grad_fn(), nullptr);
  EXPECT_EQ(position.grad_fn(), nullptr);
  EXPECT_FALSE(position.requires_grad());
}

TEST(Autograd, BackwardFromNonRequiringRootThrows) {
  Tensor x = Tensor::ones({2}, DType::kF64);
  EXPECT_TRUE(contains(error_message([&] { sum(x).backward(); }), "does not require grad"));
}

TEST(Autograd, DroppedGraphFreesItsMemory) {
  // A graph that is never backpropagated (e.g. an evaluation pass with grad on) must not
  // keep its saved tensors alive once the last handle goes away.
  Tensor x = Tensor::ones({1 << 16}, DType::kF32);
  x.set_requires_grad(true);
  size_t before = cpu_allocator_stats().current_bytes;
  {
    Tensor y = sigmoid(exp(x));  // both save their outputs
    Tensor z = sum(y * y);
    EXPECT_GT(cpu_allocator_stats().current_bytes, before + 2 * x.nbytes());
  }
  EXPECT_EQ(cpu_allocator_stats().current_bytes, before);
}

TEST(Autograd, BackwardReleasesSavedTensors) {
  Tensor x = Tensor::ones({1 << 16}, DType::kF32);
  x.set_requires_grad(true);
  Tensor loss = sum(sigmoid(exp(x)));
  size_t with_graph = cpu_allocator_stats().current_bytes;
  loss.backward();
  x.set_grad(Tensor());
  // The saved activations (two of x's size) are gone while `loss` is still held.
  EXPECT_LE(cpu_allocator_stats().current_bytes + 2 * x.nbytes(), with_graph);
}

}  // namespace
}  // namespace sy
