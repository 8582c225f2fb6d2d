// Activation recomputation: checkpointed blocks give bit-identical gradients to the plain
// path (dropout masks included) while holding far less memory after the forward pass.
#include "core/autograd/checkpoint.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/allocator.h"
#include "core/autograd/grad_mode.h"
#include "core/ops/ops.h"
#include "core/random.h"

namespace sy {
namespace {

// Deterministic values in [-scale, scale) (no dependency on the random ops under test).
Tensor filled(const Shape& shape, uint64_t salt, double scale, bool requires_grad) {
  std::vector<double> values(shape_numel(shape));
  uint64_t state = salt * 0x9E3779B97F4A7C15ull + 1;
  for (double& v : values) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    v = scale * (static_cast<double>(state >> 11) / 9007199254740992.0 * 2.0 - 1.0);
  }
  Tensor t = Tensor::from_vector(values, shape);
  if (requires_grad) t.set_requires_grad(true);
  return t;
}

// linear -> silu -> dropout -> linear, the shape of a transformer MLP. x (N, C).
struct MlpBlock {
  Tensor w1, b1;  // (F, C), (F)
  Tensor w2, b2;  // (C, F), (C)

  MlpBlock(int64_t C, int64_t F, uint64_t salt)
      : w1(filled({F, C}, salt, 1.0 / std::sqrt(C), true)),
        b1(filled({F}, salt + 1, 0.1, true)),
        w2(filled({C, F}, salt + 2, 1.0 / std::sqrt(F), true)),
        b2(filled({C}, salt + 3, 0.1, true)) {}

  Tensor forward(const Tensor& x, double dropout_p) const {
    Tensor h = silu(linear(x, w1, b1));
    if (dropout_p > 0) h = dropout(h, dropout_p, /*training=*/true);
    return linear(h, w2, b2);
  }
  std::vector<Tensor> parameters() const { return {w1, b1, w2, b2}; }
};

std::vector<MlpBlock> make_blocks(int count, int64_t C, int64_t F) {
  std::vector<MlpBlock> blocks;
  for (int i = 0; i < count; ++i) blocks.emplace_back(C, F, 100 + 10 * i);
  return blocks;
}

Tensor run_stack(const std::vector<MlpBlock>& blocks, const Tensor& x, double dropout_p,
                 bool recompute) {
  Tensor h = x;
  for (const MlpBlock& block : blocks) {
    if (recompute) {
      h = checkpoint(
          [&block, dropout_p](const std::vector<Tensor>& in) {
            return std::vector<Tensor>{block.forward(in[0], dropout_p)};
          },
          {h})[0];
    } else {
      h = block.forward(h, dropout_p);
    }
  }
  return h;
}

struct Gradients {
  std::vector<float> input;
  std::vector<std::vector<float>> parameters;
  std::vector<float> output;
};

// Fresh blocks and input, one backward of sum(out * out), with the default generator seeded.
Gradients gradients_of(double dropout_p, bool recompute, bool input_requires_grad = true) {
  std::vector<MlpBlock> blocks = make_blocks(3, 16, 48);
  Tensor x = filled({2, 5, 16}, 7, 1.0, input_requires_grad);
  manual_seed(1234);
  Tensor out = run_stack(blocks, x, dropout_p, recompute);
  sum(out * out).backward();
  Gradients result;
  if (input_requires_grad) result.input = x.grad().to_vector<float>();
  for (const MlpBlock& block : blocks) {
    for (const Tensor& p : block.parameters()) {
      EXPECT_TRUE(p.grad().defined());
      if (p.grad().defined()) result.parameters.push_back(p.grad().to_vector<float>());
    }
  }
  result.output = out.to_vector<float>();
  return result;
}

void expect_bit_identical(const Gradients& plain, const Gradients& recomputed) {
  EXPECT_EQ(plain.output, recomputed.output);
  EXPECT_EQ(plain.input, recomputed.input);  // exact float equality, element by element
  ASSERT_EQ(plain.parameters.size(), recomputed.parameters.size());
  for (size_t i = 0; i < plain.parameters.size(); ++i) {
    EXPECT_EQ(plain.parameters[i], recomputed.parameters[i]) << "parameter " << i;
  }
}

TEST(Checkpoint, MlpStackGradientsBitIdenticalToPlain) {
  Gradients plain = gradients_of(0.0, /*recompute=*/false);
  Gradients recomputed = gradients_of(0.0, /*recompute=*/true);
  ASSERT_EQ(plain.parameters.size(), 12u);
  expect_bit_identical(plain, recomputed);
}

TEST(Checkpoint, MlpStackWithDropoutGradientsBitIdenticalToPlain) {
  // The recomputation replays the forward's generator state, so it draws the same masks.
  Gradients plain = gradients_of(0.5, /*recompute=*/false);
  Gradients recomputed = gradients_of(0.5, /*recompute=*/true);
  expect_bit_identical(plain, recomputed);
  // Dropout really acted: the result differs from the path without it.
  EXPECT_NE(plain.output, gradients_of(0.0, false).output);
}

TEST(Checkpoint, BackwardLeavesTheGeneratorWhereItWas) {
  std::vector<MlpBlock> blocks = make_blocks(2, 8, 16);
  Tensor x = filled({3, 8}, 6, 1.0, true);
  manual_seed(99);
  Tensor out = run_stack(blocks, x, 0.25, /*recompute=*/true);
  PhiloxState after_forward = default_generator().state();
  EXPECT_NE(after_forward, (PhiloxState{99, 0}));  // the forward drew masks
  sum(out).backward();
  EXPECT_EQ(default_generator().state(), after_forward);
}

TEST(Checkpoint, ParametersGetGradientsWhenNoInputRequiresGrad) {
  // The first block of a model sees data that needs no gradient; its weights still do.
  Gradients plain = gradients_of(0.0, false, /*input_requires_grad=*/false);
  Gradients recomputed = gradients_of(0.0, true, /*input_requires_grad=*/false);
  ASSERT_EQ(recomputed.parameters.size(), 12u);
  expect_bit_identical(plain, recomputed);
}

TEST(Checkpoint, UnderNoGradRecordsNothing) {
  MlpBlock block(8, 16, 1);
  Tensor x = filled({4, 8}, 2, 1.0, true);
  NoGradGuard no_grad;
  Tensor out = checkpoint([&](const std::vector<Tensor>& in) {
    return std::vector<Tensor>{block.forward(in[0], 0.0)};
  }, {x})[0];
  EXPECT_EQ(out.grad_fn(), nullptr);
  EXPECT_FALSE(out.requires_grad());
}

TEST(Checkpoint, SeveralOutputsAndAnInputWithoutGrad) {
  // out0 = x * scale, out1 = exp(x); scale needs no gradient.
  auto function = [](const std::vector<Tensor>& in) {
    return std::vector<Tensor>{in[0] * in[1], exp(in[0])};
  };
  auto run = [&](bool recompute) {
    Tensor x = filled({6}, 3, 1.0, true);
    Tensor scale = filled({6}, 4, 2.0, false);
    std::vector<Tensor> out = recompute ? checkpoint(function, {x, scale}) : function({x, scale});
    (sum(out[0] * out[0]) + sum(out[1])).backward();
    EXPECT_FALSE(scale.grad().defined());
    return x.grad().to_vector<float>();
  };
  EXPECT_EQ(run(false), run(true));
}

TEST(Checkpoint, ModifiedInputIsCaughtAtBackward) {
  Tensor x = filled({4}, 5, 1.0, true);
  Tensor y = x * 2.0;
  Tensor out = checkpoint([](const std::vector<Tensor>& in) {
    return std::vector<Tensor>{exp(in[0])};
  }, {y})[0];
  {
    NoGradGuard no_grad;
    y.mul_(3.0);  // the recomputation would see other values than the forward did
  }
  EXPECT_THROW(sum(out).backward(), Error);
}

// Bytes the stack holds after its forward pass (activations kept for backward), and the
// peak above the starting point during that forward pass.
struct ForwardMemory {
  size_t live;
  size_t peak;
};

ForwardMemory forward_memory(bool recompute) {
  std::vector<MlpBlock> blocks = make_blocks(8, 64, 256);
  Tensor x = filled({4, 64, 64}, 9, 1.0, true);  // (B, T, C)
  size_t before = cpu_allocator_stats().current_bytes;
  reset_cpu_peak_stats();
  manual_seed(5);
  Tensor out = run_stack(blocks, x, 0.1, recompute);
  ForwardMemory memory{cpu_allocator_stats().current_bytes - before,
                       cpu_allocator_stats().peak_bytes - before};
  // The stack still trains: the backward runs and reaches the first block's weights.
  sum(out).backward();
  EXPECT_TRUE(blocks[0].w1.grad().defined());
  return memory;
}

TEST(Checkpoint, EightBlocksHoldFarLessMemoryAfterForward) {
  ForwardMemory plain = forward_memory(false);
  ForwardMemory recomputed = forward_memory(true);
  // Per block, the plain path keeps its input (C), the first linear's output (F, for silu),
  // the dropout mask (F bytes) and dropout's output (F, for the second matmul): about 10
  // C-sized activations with F = 4C. The checkpointed path keeps one, the block's input.
  size_t activation = 4 * 64 * 64 * sizeof(float);
  EXPECT_GE(plain.live, 8 * 8 * activation);
  EXPECT_LE(recomputed.live, 8 * 2 * activation);
  EXPECT_LT(recomputed.live * 4, plain.live);
  EXPECT_LT(recomputed.peak * 3, plain.peak);
}

}  // namespace
}  // namespace sy
