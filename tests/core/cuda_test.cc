// The CUDA backend against the CPU: copies (round trips, dtype conversions, strides), fill,
// every unary and binary kernel, matmul, softmax, rms_norm, casts, Philox, and the caching
// allocator. Every test skips without a device; the build compiles it either way.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "core/kernels/cpu/cpu_kernels.h"
#include "core/ops/ops.h"
#include "core/random.h"
#include "tests/support/op_harness.h"

#ifdef SY_WITH_CUDA
#include "core/cuda/cuda_allocator.h"
#include "core/kernels/cuda/cuda_kernels.h"
#endif

namespace sy::testing {
namespace {

const Device kGpu = Device::CUDA(0);

// Uniform values in [low, high) from a fixed seed, on the CPU.
Tensor random_tensor(const Shape& shape, DType dtype, uint64_t seed, double low = -2, double high = 2) {
  std::vector<double> values(shape_numel(shape));
  for (size_t i = 0; i < values.size(); ++i) values[i] = low + (high - low) * philox_uniform({seed, 0}, i);
  return Tensor::from_vector(values, shape, dtype);
}

double max_abs_difference(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(x[i]) && std::isnan(y[i])) continue;
    worst = std::max(worst, std::isnan(x[i]) || std::isnan(y[i]) ? INFINITY : std::abs(x[i] - y[i]));
  }
  return worst;
}

TEST(CudaCopy, RoundTripKeepsValuesForEveryDtype) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: the CUDA backend is compiled but not run";
  for (DType dtype : {DType::kF64, DType::kF32, DType::kBF16, DType::kF16, DType::kI32, DType::kI64, DType::kBool}) {
    Tensor host = random_tensor({3, 7}, DType::kF64, 1, -50, 50).to(dtype);
    Tensor back = host.to(kGpu).to(Device::CPU());
    EXPECT_EQ(back.dtype(), dtype);
    EXPECT_EQ(max_abs_difference(back, host), 0.0) << dtype_name(dtype);
  }
}

TEST(CudaCopy, DtypeConversionsOnDeviceMatchCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: the CUDA backend is compiled but not run";
  const std::vector<DType> dtypes = {DType::kF64, DType::kF32, DType::kBF16, DType::kF16,
                                     DType::kI32, DType::kI64, DType::kBool};
  for (DType from : dtypes) {
    Tensor host = random_tensor({5, 6}, DType::kF64, 2, -20, 20).to(from);
    Tensor device = host.to(kGpu);
    for (DType to : dtypes) {
      Tensor expected = host.to(to);
      Tensor actual = device.to(to).to(Device::CPU());
      EXPECT_EQ(max_abs_difference(actual, expected), 0.0) << dtype_name(from) << " -> " << dtype_name(to);
    }
  }
}

TEST(CudaCopy, StridedViewsAndHostDeviceConversions) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: the CUDA backend is compiled but not run";
  Tensor host = random_tensor({4, 6, 5}, DType::kF32, 3);
  Tensor device = host.to(kGpu);
  // Device-side gather of a permuted, narrowed view.
  Tensor view_host = host.permute({2, 0, 1}).narrow(2, 1, 4);
  Tensor view_device = device.permute({2, 0, 1}).narrow(2, 1, 4);
  EXPECT_EQ(max_abs_difference(view_device.contiguous().to(Device::CPU()), view_host.contiguous()), 0.0);
  // Strided device view straight to the host, converting on the way.
  EXPECT_EQ(max_abs_difference(view_device.to(Device::CPU()).to(DType::kBF16), view_host.to(DType::kBF16)), 0.0);
  // Host -> strided device destination with a conversion.
  Tensor target = Tensor::zeros({6, 4}, DType::kBF16, kGpu);
  Tensor target_view = target.t();  // (4, 6)
  target_view.copy_(host.select(2, 2));
  EXPECT_EQ(max_abs_difference(target.to(Device::CPU()), host.select(2, 2).t().to(DType::kBF16)), 0.0);
  // Device -> strided host destination.
  Tensor host_target = Tensor::zeros({6, 4}, DType::kF64);
  Tensor host_view = host_target.t();
  host_view.copy_(device.select(2, 2));
  EXPECT_EQ(max_abs_difference(host_target, host.select(2, 2).t().to(DType::kF64)), 0.0);
  // Broadcast source on the device.
  Tensor row = random_tensor({5}, DType::kF32, 4).to(kGpu);
  Tensor filled = Tensor::empty({3, 5}, DType::kF32, kGpu);
  filled.copy_(row);
  for (int64_t r = 0; r < 3; ++r) {
    EXPECT_EQ(max_abs_difference(filled.to(Device::CPU()).select(0, r), row.to(Device::CPU())), 0.0);
  }
}

TEST(CudaFill, EveryDtypeAndStridedView) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: the CUDA backend is compiled but not run";
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16, DType::kF64, DType::kI32, DType::kI64, DType::kBool}) {
    Tensor device = Tensor::full({3, 4}, 1.5, dtype, kGpu);
    EXPECT_EQ(max_abs_difference(device.to(Device::CPU()), Tensor::full({3, 4}, 1.5, dtype)), 0.0)
        << dtype_name(dtype);
  }
  Tensor base = Tensor::zeros({4, 4}, DType::kF32, kGpu);
  Tensor column = base.select(1, 2);
  column.fill_(7);
  Tensor expected = Tensor::zeros({4, 4});
  Tensor expected_column = expected.select(1, 2);
  expected_column.fill_(7);
  EXPECT_EQ(max_abs_difference(base.to(Device::CPU()), expected), 0.0);
  // 2^62 survives the trip through the kernel's double value and the i64 store.
  Tensor big = Tensor::full({3}, 4611686018427387904.0, DType::kI64, kGpu);
  Tensor big_host = big.to(Device::CPU());
  EXPECT_EQ(big_host.data<int64_t>()[2], int64_t{1} << 62);
}

#ifdef SY_WITH_CUDA

TEST(CudaUnary, EveryOpMatchesCpuInF32AndBF16) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: the CUDA backend is compiled but not run";
  using kernels::UnaryOp;
  const std::vector<UnaryOp> ops = {UnaryOp::kNeg,  UnaryOp::kExp,     UnaryOp::kLog,     UnaryOp::kSqrt,
                                    UnaryOp::kRsqrt, UnaryOp::kAbs,    UnaryOp::kSilu,    UnaryOp::kGelu,
                                    UnaryOp::kSigmoid, UnaryOp::kTanh, UnaryOp::kRelu,    UnaryOp::kPowScalar,
                                    UnaryOp::kClamp, UnaryOp::kSign,   UnaryOp::kReciprocal};
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF64}) {
    // Positive inputs for log/sqrt; a transposed view checks the strided path.
    Tensor x_host = random_tensor({6, 5}, dtype, 5, 0.1, 3);
    Tensor signed_host = random_tensor({6, 5}, dtype, 6, -3, 3);
    for (UnaryOp op : ops) {
      bool positive_only = op == UnaryOp::kLog || op == UnaryOp::kSqrt || op == UnaryOp::kRsqrt ||
                           op == UnaryOp::kPowScalar;
      const Tensor& base = positive_only ? x_host : signed_host;
      const double alpha = op == UnaryOp::kClamp ? -0.5 : 1.7, beta = 0.8;
      // Transposed views: the strided path on both sides.
      Tensor input = base.t();
      Tensor expected = Tensor::empty(input.shape(), dtype);
      kernels::cpu::unary(op, input, expected, alpha, beta);
      Tensor input_device = base.to(kGpu).t();
      Tensor actual = Tensor::empty(input.shape(), dtype, kGpu);
      kernels::cuda::unary(op, input_device, actual, alpha, beta);
      const double tolerance = dtype == DType::kBF16 ? 2e-2 : 1e-5;
      EXPECT_LT(max_relative_error(actual.to(Device::CPU()).to(DType::kF64), expected.to(DType::kF64)), tolerance)
          << "unary op " << static_cast<int>(op) << " in " << dtype_name(dtype);
    }
  }
}

TEST(CudaBinary, EveryOpWithBroadcastingMatchesCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: the CUDA backend is compiled but not run";
  using kernels::BinaryOp;
  const std::vector<BinaryOp> ops = {BinaryOp::kAdd, BinaryOp::kSub, BinaryOp::kMul, BinaryOp::kDiv, BinaryOp::kPow,
                                     BinaryOp::kMaximum, BinaryOp::kMinimum, BinaryOp::kEq, BinaryOp::kNe,
                                     BinaryOp::kLt, BinaryOp::kLe, BinaryOp::kGt, BinaryOp::kGe};
  const Shape shape = {4, 3, 5};
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kI64}) {
    // (4, 1, 5) against (3, 1) broadcast to (4, 3, 5). Integer steps 1..7 make some pairs
    // equal (for the comparisons); floats take half of them.
    Tensor a = random_tensor({4, 1, 5}, DType::kF64, 7, 1, 8).to(DType::kI64);
    Tensor b = random_tensor({3, 1}, DType::kF64, 8, 1, 8).to(DType::kI64);
    if (dtype != DType::kI64) {
      a = (a.to(DType::kF64) * 0.5).to(dtype);
      b = (b.to(DType::kF64) * 0.5).to(dtype);
    }
    Tensor a_device = a.to(kGpu), b_device = b.to(kGpu);
    for (BinaryOp op : ops) {
      const bool comparison = op >= BinaryOp::kEq;
      const DType out_dtype = comparison ? DType::kBool : dtype;
      Tensor expected = Tensor::empty(shape, out_dtype);
      kernels::cpu::binary(op, a.expand(shape), b.expand(shape), expected);
      Tensor actual = Tensor::empty(shape, out_dtype, kGpu);
      kernels::cuda::binary(op, a_device.expand(shape), b_device.expand(shape), actual);
      const double tolerance = dtype == DType::kBF16 && !comparison ? 2e-2 : 1e-6;
      EXPECT_LT(max_relative_error(actual.to(Device::CPU()).to(DType::kF64), expected.to(DType::kF64)), tolerance)
          << "binary op " << static_cast<int>(op) << " in " << dtype_name(dtype);
    }
  }
}

TEST(CudaSoftmax, RowsMatchReferenceInF32AndBF16) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: the CUDA backend is compiled but not run";
  for (int64_t length : {1, 7, 300, 2049}) {
    for (DType dtype : {DType::kF32, DType::kBF16}) {
      Tensor x = random_tensor({5, length}, DType::kF64, 9, -6, 6);
      std::vector<double> values = x.to_vector<double>(), expected(values.size());
      for (int64_t r = 0; r < 5; ++r) {
        double row_max = -INFINITY, sum = 0;
        for (int64_t j = 0; j < length; ++j) row_max = std::max(row_max, values[r * length + j]);
        for (int64_t j = 0; j < length; ++j) sum += std::exp(values[r * length + j] - row_max);
        for (int64_t j = 0; j < length; ++j) expected[r * length + j] = std::exp(values[r * length + j] - row_max) / sum;
      }
      Tensor x_device = x.to(dtype).to(kGpu);
      Tensor out = Tensor::empty(x_device.shape(), dtype, kGpu);
      kernels::cuda::softmax_last_dim(x_device, out);
      // The reference sees the unrounded input; bf16 rounds input and output.
      const double tolerance = dtype == DType::kBF16 ? 5e-2 : 1e-5;
      EXPECT_LT(max_relative_error(out.to(Device::CPU()).to(DType::kF64), Tensor::from_vector(expected, {5, length}, DType::kF64)),
                tolerance)
          << "length " << length << " " << dtype_name(dtype);
    }
  }
}

TEST(CudaRmsNorm, OutputAndRstdMatchReference) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: the CUDA backend is compiled but not run";
  const double eps = 1e-6;
  for (int64_t width : {8, 1000}) {
    for (DType dtype : {DType::kF32, DType::kBF16}) {
      Tensor x = random_tensor({2, 3, width}, dtype, 10).to(DType::kF64);
      Tensor weight = random_tensor({width}, dtype, 11, 0.5, 1.5).to(DType::kF64);
      std::vector<double> xs = x.to_vector<double>(), ws = weight.to_vector<double>();
      std::vector<double> expected(xs.size()), expected_rstd(6);
      for (int64_t r = 0; r < 6; ++r) {
        double squares = 0;
        for (int64_t c = 0; c < width; ++c) squares += xs[r * width + c] * xs[r * width + c];
        expected_rstd[r] = 1 / std::sqrt(squares / width + eps);
        for (int64_t c = 0; c < width; ++c) expected[r * width + c] = xs[r * width + c] * expected_rstd[r] * ws[c];
      }
      Tensor x_device = x.to(dtype).to(kGpu), weight_device = weight.to(dtype).to(kGpu);
      Tensor out = Tensor::empty(x.shape(), dtype, kGpu);
      Tensor rstd = Tensor::empty({2, 3}, DType::kF32, kGpu);
      kernels::cuda::rms_norm(x_device, weight_device, eps, out, rstd);
      const double tolerance = dtype == DType::kBF16 ? 2e-2 : 1e-5;
      EXPECT_LT(max_relative_error(out.to(Device::CPU()).to(DType::kF64), Tensor::from_vector(expected, x.shape(), DType::kF64)),
                tolerance);
      EXPECT_LT(max_relative_error(rstd.to(Device::CPU()).to(DType::kF64), Tensor::from_vector(expected_rstd, {2, 3}, DType::kF64)),
                1e-5);
    }
  }
}

TEST(CudaPhilox, UniformMatchesCpuValues) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: the CUDA backend is compiled but not run";
  const PhiloxState state{0x5eed1234abcdULL, 17};
  for (int64_t n : {1, 6, 1003}) {
    Tensor out = Tensor::empty({n}, DType::kF32, kGpu);
    kernels::cuda::philox_uniform(state, out);
    std::vector<float> values = out.to_vector<float>();
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_EQ(values[i], philox_uniform(state, static_cast<uint64_t>(i))) << "index " << i << " of " << n;
    }
  }
  // A transposed destination still receives the values in row-major order of its shape.
  Tensor base = Tensor::empty({3, 4}, DType::kF32, kGpu);
  Tensor view = base.t();  // (4, 3)
  kernels::cuda::philox_uniform(state, view);
  std::vector<float> values = view.to_vector<float>();
  for (int64_t i = 0; i < 12; ++i) EXPECT_EQ(values[i], philox_uniform(state, static_cast<uint64_t>(i)));
}

TEST(CudaAllocator, RoundsToSizeClasses) {
  // Pure arithmetic: runs with or without a device.
  EXPECT_EQ(cuda::caching_allocator_round_size(1), 512u);
  EXPECT_EQ(cuda::caching_allocator_round_size(512), 512u);
  EXPECT_EQ(cuda::caching_allocator_round_size(513), 1024u);
  EXPECT_EQ(cuda::caching_allocator_round_size((1u << 20) - 1), size_t{1} << 20);
  EXPECT_EQ(cuda::caching_allocator_round_size(1u << 20), size_t{2} << 20);
  EXPECT_EQ(cuda::caching_allocator_round_size((size_t{2} << 20) + 1), size_t{4} << 20);
}

TEST(CudaAllocator, ReusesFreedBlocksAndKeepsStats) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: the CUDA backend is compiled but not run";
  cuda::CachingAllocator& allocator = cuda::caching_allocator_for(0);
  allocator.empty_cache();
  allocator.reset_peak();
  const AllocatorStats start = allocator.stats();
  EXPECT_EQ(start.cached_bytes, 0u);
  void* first = allocator.allocate(3 << 20);  // 4 MiB class
  AllocatorStats after_first = allocator.stats();
  EXPECT_EQ(after_first.current_bytes, start.current_bytes + (4 << 20));
  EXPECT_EQ(after_first.allocations, start.allocations + 1);
  allocator.free(first, 3 << 20);
  EXPECT_EQ(allocator.stats().cached_bytes, size_t{4} << 20);
  // Same class: the cached block comes back without a new cudaMalloc.
  void* second = allocator.allocate((3 << 20) + 100);
  EXPECT_EQ(second, first);
  EXPECT_EQ(allocator.stats().allocations, after_first.allocations);
  EXPECT_EQ(allocator.stats().cached_bytes, 0u);
  // A block more than twice the request is not handed out for it.
  allocator.free(second, (3 << 20) + 100);
  void* small = allocator.allocate(1000);
  EXPECT_NE(small, first);
  EXPECT_EQ(allocator.stats().allocations, after_first.allocations + 1);
  EXPECT_EQ(allocator.stats().peak_bytes, start.current_bytes + (4 << 20));  // the 4 MiB block was freed
  allocator.free(small, 1000);
  allocator.reset_peak();
  EXPECT_EQ(allocator.stats().peak_bytes, start.current_bytes);
  allocator.empty_cache();
  EXPECT_EQ(allocator.stats().cached_bytes, 0u);
  EXPECT_EQ(allocator.stats().current_bytes, start.current_bytes);
}

TEST(CudaAllocator, TensorsReuseMemoryAcrossIterations) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: the CUDA backend is compiled but not run";
  cuda::CachingAllocator& allocator = cuda::caching_allocator_for(0);
  { Tensor warm = Tensor::zeros({256, 256}, DType::kF32, kGpu); }
  const size_t allocations = allocator.stats().allocations;
  for (int step = 0; step < 5; ++step) {
    Tensor x = Tensor::ones({256, 256}, DType::kF32, kGpu);
    EXPECT_EQ(x.to(Device::CPU()).to_vector<float>()[255], 1.0f);
  }
  EXPECT_EQ(allocator.stats().allocations, allocations) << "the steady state must not call cudaMalloc";
}

#endif  // SY_WITH_CUDA

TEST(CudaMatmul, F32MatchesCpuWithTransposedAndBroadcastOperands) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: the CUDA backend is compiled but not run";
  Tensor a = random_tensor({3, 17, 33}, DType::kF32, 12);
  Tensor b = random_tensor({33, 9}, DType::kF32, 13);
  Tensor bt = random_tensor({9, 33}, DType::kF32, 14);
  EXPECT_LT(max_relative_error(matmul(a.to(kGpu), b.to(kGpu)).to(Device::CPU()), matmul(a, b)), 1e-4);
  EXPECT_LT(max_relative_error(matmul(a.to(kGpu), bt.to(kGpu).t()).to(Device::CPU()), matmul(a, bt.t())), 1e-4);
  Tensor at = a.transpose(1, 2).contiguous();  // (3, 33, 17)
  EXPECT_LT(max_relative_error(matmul(at.to(kGpu).transpose(1, 2), b.to(kGpu)).to(Device::CPU()), matmul(a, b)), 1e-4);
  // A narrowed view: row-major with a leading dimension (120) larger than K, overlapping batches.
  Tensor wide = random_tensor({17, 3, 40}, DType::kF32, 15);
  Tensor narrowed = wide.permute({1, 0, 2}).narrow(2, 2, 33);
  Tensor narrowed_device = wide.to(kGpu).permute({1, 0, 2}).narrow(2, 2, 33);
  EXPECT_LT(max_relative_error(matmul(narrowed_device, b.to(kGpu)).to(Device::CPU()), matmul(narrowed, b)), 1e-4);
  // Neither row- nor column-major (strides (1, 99, 3)): copied before the product.
  Tensor scattered = random_tensor({17, 33, 3}, DType::kF32, 20);
  Tensor odd = scattered.permute({2, 0, 1});
  Tensor odd_device = scattered.to(kGpu).permute({2, 0, 1});
  EXPECT_LT(max_relative_error(matmul(odd_device, b.to(kGpu)).to(Device::CPU()), matmul(odd, b)), 1e-4);
}

TEST(CudaMatmul, BF16MatchesCpuWithinBF16Tolerance) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: the CUDA backend is compiled but not run";
  Tensor a = random_tensor({2, 64, 128}, DType::kBF16, 16);
  Tensor b = random_tensor({2, 128, 48}, DType::kBF16, 17);
  Tensor expected = matmul(a.to(DType::kF32), b.to(DType::kF32));
  Tensor actual = matmul(a.to(kGpu), b.to(kGpu));
  EXPECT_EQ(actual.dtype(), DType::kBF16);
  // Products accumulate in f32; the output is rounded once to bf16 (~2^-8 relative).
  EXPECT_LT(max_relative_error(actual.to(Device::CPU()).to(DType::kF32), expected), 2e-2);
}

TEST(CudaOps, CastAndElementwiseOpsMatchCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: the CUDA backend is compiled but not run";
  Tensor x = random_tensor({8, 5}, DType::kF32, 18);
  Tensor y = random_tensor({5}, DType::kF32, 19);
  Tensor x_device = x.to(kGpu), y_device = y.to(kGpu);
  EXPECT_EQ(max_abs_difference(x_device.to(DType::kBF16).to(Device::CPU()), x.to(DType::kBF16)), 0.0);
  EXPECT_LT(max_relative_error(silu(x_device * y_device + 1.0).to(Device::CPU()), silu(x * y + 1.0)), 1e-5);
  EXPECT_EQ(max_abs_difference(gt(x_device, y_device).to(Device::CPU()), gt(x, y)), 0.0);
  Tensor mixed = x_device.to(DType::kBF16) + y_device;  // promotes to f32
  EXPECT_EQ(mixed.dtype(), DType::kF32);
  EXPECT_LT(max_relative_error(mixed.to(Device::CPU()), x.to(DType::kBF16) + y), 1e-6);
}

TEST(CudaOps, TimesA4096SquareBF16Matmul) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: the CUDA backend is compiled but not run";
  // Not a check: prints the throughput for scripts/gpu-check.sh (skipped unless asked).
  if (std::getenv("SY_CUDA_BENCH") == nullptr) GTEST_SKIP() << "set SY_CUDA_BENCH=1 to time the matmul";
  Tensor a = Tensor::ones({4096, 4096}, DType::kBF16, kGpu), b = Tensor::ones({4096, 4096}, DType::kBF16, kGpu);
  Tensor warm = matmul(a, b);
  warm.narrow(0, 0, 1).to(Device::CPU());  // waits for the stream
  const int iterations = 20;
  auto start = std::chrono::steady_clock::now();
  Tensor c;
  for (int i = 0; i < iterations; ++i) c = matmul(a, b);
  c.narrow(0, 0, 1).to(Device::CPU());
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / iterations;
  std::printf("bf16 matmul 4096^3: %.3f ms, %.1f TFLOP/s\n", seconds * 1e3, 2.0 * 4096.0 * 4096.0 * 4096.0 / seconds / 1e12);
  EXPECT_EQ(c.narrow(0, 0, 1).to(Device::CPU()).to_vector<float>()[0], 4096.0f);
}

}  // namespace
}  // namespace sy::testing
