// The MoE ops on CUDA against the CPU: topk (ties, NaN, both directions), index_select and
// index_add (every element size, padding rows, repeated indices, their gradients), and the
// grouped matmul (forward, transposed and strided weights, both backward products). Every test
// skips without a device; the build compiles it either way.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "core/ops/ops.h"
#include "core/random.h"

#ifdef SY_WITH_CUDA
#include "core/kernels/cuda/cuda_kernels.h"
#endif

namespace sy::testing {
namespace {

const Device kGpu = Device::CUDA(0);
const Device kCpu = Device::CPU();

// Uniform values in [low, high) from a fixed seed, on the CPU; `step` > 0 rounds them to
// multiples of step (ties for topk).
Tensor random_tensor(const Shape& shape, DType dtype, uint64_t seed, double low = -2, double high = 2,
                     double step = 0) {
  std::vector<double> values(shape_numel(shape));
  for (size_t i = 0; i < values.size(); ++i) {
    values[i] = low + (high - low) * philox_uniform({seed, 0}, i);
    if (step > 0) values[i] = std::round(values[i] / step) * step;
  }
  return Tensor::from_vector(values, shape, dtype);
}

// The largest |a - b| (a NaN in both counts as equal; in one, as infinite).
double max_abs_difference(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  std::vector<double> x = a.to(kCpu).to_vector<double>(), y = b.to(kCpu).to_vector<double>();
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(x[i]) && std::isnan(y[i])) continue;
    worst = std::max(worst, std::isnan(x[i]) || std::isnan(y[i]) ? INFINITY : std::abs(x[i] - y[i]));
  }
  return worst;
}

std::vector<int64_t> indices_of(const Tensor& t) { return t.to(kCpu).to_vector<int64_t>(); }

TEST(CudaTopk, MatchesCpuWithTiesAndNaNInBothDirections) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: the CUDA MoE kernels are compiled but not run";
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    // Multiples of 0.25 in [-2, 2]: 17 values over 64 columns, so every row has ties.
    Tensor x = random_tensor({37, 64}, DType::kF64, 11, -2, 2, 0.25);
    x.narrow(0, 3, 1).narrow(1, 5, 1).fill_(std::numeric_limits<double>::quiet_NaN());
    x.narrow(0, 8, 1).narrow(1, 60, 2).fill_(std::numeric_limits<double>::quiet_NaN());
    x = x.to(dtype);
    const Tensor x_gpu = x.to(kGpu);
    for (int64_t k : {1, 2, 8, 16}) {
      for (bool largest : {true, false}) {
        auto [values, indices] = topk(x, k, -1, largest);
        auto [values_gpu, indices_gpu] = topk(x_gpu, k, -1, largest);
        EXPECT_TRUE(values_gpu.device() == kGpu && indices_gpu.dtype() == DType::kI64);
        EXPECT_EQ(max_abs_difference(values_gpu, values), 0.0) << dtype_name(dtype) << " k " << k;
        EXPECT_EQ(indices_of(indices_gpu), indices_of(indices)) << dtype_name(dtype) << " k " << k;
      }
    }
  }
}

TEST(CudaTopk, AlongTheFirstDimMatchesCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: the CUDA MoE kernels are compiled but not run";
  Tensor x = random_tensor({40, 6}, DType::kF32, 12, -1, 1, 0.125);
  auto [values, indices] = topk(x, 5, 0);
  auto [values_gpu, indices_gpu] = topk(x.to(kGpu), 5, 0);
  EXPECT_EQ(values_gpu.shape(), (Shape{5, 6}));
  EXPECT_EQ(max_abs_difference(values_gpu, values), 0.0);
  EXPECT_EQ(indices_of(indices_gpu), indices_of(indices));
}

TEST(CudaTopk, KAboveTheKernelLimitFailsClearly) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: the CUDA MoE kernels are compiled but not run";
  Tensor x = random_tensor({4, 32}, DType::kF32, 13).to(kGpu);
  EXPECT_THROW(topk(x, 17), Error);
}

TEST(CudaIndexSelect, RowsMatchCpuForEveryElementSize) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: the CUDA MoE kernels are compiled but not run";
  const Tensor index = Tensor::from_vector(std::vector<int64_t>{3, 0, 8, 3, 5}, {5}, DType::kI64);
  for (DType dtype : {DType::kF64, DType::kF32, DType::kBF16, DType::kI64, DType::kBool}) {
    Tensor x = random_tensor({9, 5}, DType::kF64, 21, -50, 50).to(dtype);
    Tensor expected = index_select(x, 0, index);
    Tensor actual = index_select(x.to(kGpu), 0, index.to(kGpu));
    EXPECT_EQ(actual.dtype(), dtype);
    EXPECT_EQ(max_abs_difference(actual, expected), 0.0) << dtype_name(dtype);
  }
  // A middle dim of a 3-D tensor, a permuted (non-contiguous) input and an i32 index.
  Tensor x = random_tensor({3, 9, 4}, DType::kF32, 22);
  Tensor index32 = index.to(DType::kI32);
  EXPECT_EQ(max_abs_difference(index_select(x.to(kGpu), 1, index32.to(kGpu)), index_select(x, 1, index32)), 0.0);
  Tensor permuted = x.permute({1, 0, 2});
  EXPECT_EQ(max_abs_difference(index_select(permuted.to(kGpu), 0, index.to(kGpu)), index_select(permuted, 0, index)),
            0.0);
}

TEST(CudaIndexSelect, OutOfRangeIndexFailsBeforeAnyKernel) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: the CUDA MoE kernels are compiled but not run";
  Tensor x = random_tensor({9, 5}, DType::kF32, 23).to(kGpu);
  Tensor bad = Tensor::from_vector(std::vector<int64_t>{1, 9}, {2}, DType::kI64).to(kGpu);
  EXPECT_THROW(index_select(x, 0, bad), Error);
  EXPECT_THROW(index_select(x, 0, bad.to(kCpu)), Error);  // index on another device
}

#ifdef SY_WITH_CUDA
TEST(CudaIndexSelect, KernelGivesZeroRowsForPaddingIndex) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: the CUDA MoE kernels are compiled but not run";
  Tensor x = random_tensor({1, 4, 3}, DType::kBF16, 24, 1, 2);
  Tensor index = Tensor::from_vector(std::vector<int64_t>{-1, 2, -1}, {3}, DType::kI64);
  Tensor out = Tensor::full({1, 3, 3}, 7.0, DType::kBF16, kGpu);
  kernels::cuda::index_select_rows(x.to(kGpu), index.to(kGpu), out);
  std::vector<double> got = out.to(kCpu).to_vector<double>(), row = x.narrow(1, 2, 1).to_vector<double>();
  EXPECT_EQ(got, (std::vector<double>{0, 0, 0, row[0], row[1], row[2], 0, 0, 0}));
}

TEST(CudaIndexAdd, KernelSkipsPaddingIndex) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: the CUDA MoE kernels are compiled but not run";
  Tensor out = Tensor::zeros({1, 2, 2}, DType::kF32, kGpu);
  Tensor source = Tensor::from_vector(std::vector<double>{1, 2, 30, 40, 500, 600}, {1, 3, 2}, DType::kF32);
  Tensor index = Tensor::from_vector(std::vector<int64_t>{1, -1, 1}, {3}, DType::kI64);
  kernels::cuda::index_add_rows(out, index.to(kGpu), source.to(kGpu), 1.0);
  EXPECT_EQ(out.to(kCpu).to_vector<double>(), (std::vector<double>{0, 0, 501, 602}));
}
#endif

TEST(CudaIndexAdd, RepeatedIndicesMatchCpuInF32AndBF16) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: the CUDA MoE kernels are compiled but not run";
  const Tensor index = Tensor::from_vector(std::vector<int64_t>{2, 0, 6, 2, 2, 5, 0, 1, 6, 2, 3, 2}, {12},
                                           DType::kI64);
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    // bf16: the CPU rounds after every addition, CUDA once from f32 (values up to ~8 here).
    const double tolerance = dtype == DType::kF32 ? 1e-5 : 0.0625;
    Tensor x = random_tensor({7, 6}, DType::kF32, 31).to(dtype);
    Tensor source = random_tensor({12, 6}, DType::kF32, 32).to(dtype);
    Tensor expected = index_add(x, 0, index, source, 0.5);
    Tensor actual = index_add(x.to(kGpu), 0, index.to(kGpu), source.to(kGpu), 0.5);
    EXPECT_EQ(actual.dtype(), dtype);
    EXPECT_LE(max_abs_difference(actual, expected), tolerance) << dtype_name(dtype);
    // Along the last dim of a 3-D tensor.
    Tensor x3 = random_tensor({2, 3, 7}, DType::kF32, 33).to(dtype);
    Tensor source3 = random_tensor({2, 3, 12}, DType::kF32, 34).to(dtype);
    EXPECT_LE(max_abs_difference(index_add(x3.to(kGpu), 2, index.to(kGpu), source3.to(kGpu)),
                                 index_add(x3, 2, index, source3)),
              tolerance)
        << dtype_name(dtype);
  }
}

TEST(CudaIndexSelect, GradientsOfSelectAndAddMatchCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: the CUDA MoE kernels are compiled but not run";
  const Tensor index = Tensor::from_vector(std::vector<int64_t>{4, 1, 4, 0, 2, 4}, {6}, DType::kI64);
  const Tensor x = random_tensor({5, 3}, DType::kF32, 41);
  const Tensor source = random_tensor({6, 3}, DType::kF32, 42);
  const Tensor dout_select = random_tensor({6, 3}, DType::kF32, 43);
  const Tensor dout_add = random_tensor({5, 3}, DType::kF32, 44);
  std::vector<Tensor> grads[2];
  for (Device device : {kCpu, kGpu}) {
    Tensor x_leaf = x.to(device).set_requires_grad(true);
    Tensor source_leaf = source.to(device).set_requires_grad(true);
    index_select(x_leaf, 0, index.to(device)).backward(dout_select.to(device));
    index_add(x_leaf, 0, index.to(device), source_leaf, 2.0).backward(dout_add.to(device));
    grads[device.is_cuda()] = {x_leaf.grad(), source_leaf.grad()};
  }
  EXPECT_TRUE(grads[1][0].device() == kGpu);
  EXPECT_LE(max_abs_difference(grads[1][0], grads[0][0]), 1e-6);  // repeated rows summed
  EXPECT_LE(max_abs_difference(grads[1][1], grads[0][1]), 1e-6);  // alpha * picked rows
}

// The uneven groups of a routed batch: an empty expert, a single row, a large group.
const std::vector<int64_t> kCounts = {5, 0, 17, 3, 1, 9};
constexpr int64_t kRows = 35, kIn = 24, kOut = 40;

// bf16 outputs of magnitude up to ~6 round at 2^-5; f32 differs only in summation order.
double product_tolerance(DType dtype) { return dtype == DType::kF32 ? 1e-4 : 0.07; }

TEST(CudaGroupedMatmul, ForwardMatchesCpuInF32AndBF16) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: the CUDA MoE kernels are compiled but not run";
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    Tensor x = random_tensor({kRows, kIn}, DType::kF32, 51, -1, 1).to(dtype);
    Tensor w = random_tensor({6, kIn, kOut}, DType::kF32, 52, -1, 1).to(dtype);
    Tensor expected = grouped_matmul(x, w, kCounts);
    Tensor actual = grouped_matmul(x.to(kGpu), w.to(kGpu), kCounts);
    EXPECT_EQ(actual.dtype(), dtype);
    EXPECT_LE(max_abs_difference(actual, expected), product_tolerance(dtype)) << dtype_name(dtype);
    // One group: runs on the current stream without a fork.
    Tensor one = grouped_matmul(x.to(kGpu), w.narrow(0, 2, 1).to(kGpu), {kRows});
    EXPECT_LE(max_abs_difference(one, grouped_matmul(x, w.narrow(0, 2, 1), {kRows})), product_tolerance(dtype));
  }
}

TEST(CudaGroupedMatmul, TransposedAndStridedWeightViewsMatchCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: the CUDA MoE kernels are compiled but not run";
  Tensor x = random_tensor({kRows, kIn}, DType::kF32, 53, -1, 1);
  // (E, Cout, Cin) seen as (E, Cin, Cout): the layout the input gradient passes.
  Tensor w_t = random_tensor({6, kOut, kIn}, DType::kF32, 54, -1, 1);
  EXPECT_LE(max_abs_difference(grouped_matmul(x.to(kGpu), w_t.to(kGpu).transpose(1, 2), kCounts),
                               grouped_matmul(x, w_t.transpose(1, 2), kCounts)),
            1e-4);
  // Row-major matrices with a leading dim larger than Cout (a narrowed view, read in place).
  Tensor wide = random_tensor({6, kIn, kOut + 8}, DType::kF32, 55, -1, 1);
  EXPECT_LE(max_abs_difference(grouped_matmul(x.to(kGpu), wide.to(kGpu).narrow(2, 3, kOut), kCounts),
                               grouped_matmul(x, wide.narrow(2, 3, kOut), kCounts)),
            1e-4);
  // Neither layout (a permuted batch of (Cin, E, Cout)): copied first.
  Tensor mixed = random_tensor({kIn, 6, kOut}, DType::kF32, 56, -1, 1);
  EXPECT_LE(max_abs_difference(grouped_matmul(x.to(kGpu), mixed.to(kGpu).permute({1, 0, 2}), kCounts),
                               grouped_matmul(x, mixed.permute({1, 0, 2}), kCounts)),
            1e-4);
}

TEST(CudaGroupedMatmul, BothBackwardProductsMatchCpuInF32AndBF16) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: the CUDA MoE kernels are compiled but not run";
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    const Tensor x = random_tensor({kRows, kIn}, DType::kF32, 61, -1, 1).to(dtype);
    const Tensor w = random_tensor({6, kIn, kOut}, DType::kF32, 62, -1, 1).to(dtype);
    const Tensor dout = random_tensor({kRows, kOut}, DType::kF32, 63, -1, 1).to(dtype);
    std::vector<Tensor> grads[2];
    for (Device device : {kCpu, kGpu}) {
      Tensor x_leaf = x.to(device).set_requires_grad(true);
      Tensor w_leaf = w.to(device).set_requires_grad(true);
      grouped_matmul(x_leaf, w_leaf, kCounts).backward(dout.to(device));
      grads[device.is_cuda()] = {x_leaf.grad(), w_leaf.grad()};
    }
    ASSERT_TRUE(grads[1][0].device() == kGpu && grads[1][1].device() == kGpu);
    // dx = dout_e @ w[e]^T sums Cout = 40 products; dw[e] = x_e^T @ dout_e up to 17 rows.
    EXPECT_LE(max_abs_difference(grads[1][0], grads[0][0]), product_tolerance(dtype)) << dtype_name(dtype);
    EXPECT_LE(max_abs_difference(grads[1][1], grads[0][1]), product_tolerance(dtype)) << dtype_name(dtype);
    // The empty expert's gradient is written as zeros, not left uninitialized.
    EXPECT_EQ(max_abs_difference(grads[1][1].narrow(0, 1, 1), Tensor::zeros({1, kIn, kOut}, dtype)), 0.0);
  }
}

}  // namespace
}  // namespace sy::testing
