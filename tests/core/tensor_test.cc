// Tensor handles, views sharing storage, copies and conversions.
#include "core/tensor.h"

#include <gtest/gtest.h>

#include "core/ops/ops.h"

namespace sy {
namespace {

TEST(Tensor, FactoriesShapeAndDtype) {
  Tensor z = Tensor::zeros({2, 3});
  EXPECT_EQ(z.shape(), (Shape{2, 3}));
  EXPECT_EQ(z.strides(), (Shape{3, 1}));
  EXPECT_EQ(z.dtype(), DType::kF32);
  EXPECT_EQ(z.numel(), 6);
  EXPECT_TRUE(z.is_contiguous());
  EXPECT_EQ(z.to_vector<float>(), std::vector<float>(6, 0.0f));
  EXPECT_EQ(Tensor::full({2}, 2.5, DType::kF64).to_vector<double>(), (std::vector<double>{2.5, 2.5}));
  EXPECT_EQ(Tensor::arange(4).to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(Tensor::scalar(3.0).dim(), 0);
  EXPECT_DOUBLE_EQ(Tensor::scalar(3.0).item(), 3.0);
}

TEST(Tensor, CpuStorageIs64ByteAligned) {
  for (int64_t n : {1, 3, 17, 1000}) {
    Tensor t = Tensor::empty({n}, DType::kBF16);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.storage()->data()) % 64, 0u);
  }
}

TEST(Tensor, ViewsShareStorage) {
  Tensor x = Tensor::from_vector(std::vector<float>{0, 1, 2, 3, 4, 5}, {2, 3});
  Tensor t = x.t();
  EXPECT_EQ(t.shape(), (Shape{3, 2}));
  EXPECT_FALSE(t.is_contiguous());
  EXPECT_EQ(t.storage(), x.storage());
  EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{0, 3, 1, 4, 2, 5}));
  Tensor row = x.select(0, 1);
  EXPECT_EQ(row.to_vector<float>(), (std::vector<float>{3, 4, 5}));
  Tensor column = x.narrow(1, 1, 2);
  EXPECT_EQ(column.to_vector<float>(), (std::vector<float>{1, 2, 4, 5}));
  column.fill_(9);
  EXPECT_EQ(x.to_vector<float>(), (std::vector<float>{0, 9, 9, 3, 9, 9}));
  Tensor expanded = Tensor::from_vector(std::vector<float>{1, 2}, {2, 1}).expand({2, 3});
  EXPECT_EQ(expanded.strides(), (Shape{1, 0}));
  EXPECT_EQ(expanded.to_vector<float>(), (std::vector<float>{1, 1, 1, 2, 2, 2}));
  EXPECT_EQ(x.unsqueeze(0).shape(), (Shape{1, 2, 3}));
  EXPECT_EQ(x.unsqueeze(-1).shape(), (Shape{2, 3, 1}));
  EXPECT_EQ(x.unsqueeze(1).squeeze(1).shape(), (Shape{2, 3}));
  EXPECT_EQ(x.permute({1, 0}).shape(), (Shape{3, 2}));
}

TEST(Tensor, ReshapeViewsWhenPossibleAndCopiesOtherwise) {
  Tensor x = Tensor::from_vector(std::vector<float>{0, 1, 2, 3, 4, 5}, {2, 3});
  Tensor flat = x.reshape({-1});
  EXPECT_EQ(flat.storage(), x.storage());
  Tensor t = x.t();
  EXPECT_THROW(t.view({6}), Error);
  Tensor copied = t.reshape({6});
  EXPECT_NE(copied.storage(), x.storage());
  EXPECT_EQ(copied.to_vector<float>(), (std::vector<float>{0, 3, 1, 4, 2, 5}));
  // A view that splits a dim of a transposed tensor keeps sharing storage.
  Tensor big = Tensor::arange(24, DType::kF32).reshape({2, 3, 4}).transpose(0, 2);  // (4, 3, 2)
  Tensor split = big.view({2, 2, 3, 2});
  EXPECT_EQ(split.storage(), big.storage());
  EXPECT_EQ(split.contiguous().to_vector<float>(), big.contiguous().to_vector<float>());
}

TEST(Tensor, ContiguousCopiesOnlyWhenNeeded) {
  Tensor x = Tensor::ones({4, 5});
  EXPECT_EQ(x.contiguous().storage(), x.storage());
  EXPECT_NE(x.t().contiguous().storage(), x.storage());
  EXPECT_TRUE(x.t().contiguous().is_contiguous());
}

TEST(Tensor, DtypeConversionsRoundTrip) {
  std::vector<double> values = {-2.5, 0.0, 1.0, 3.140625, 65504.0};
  Tensor x = Tensor::from_vector(values, {5}, DType::kF64);
  EXPECT_EQ(x.to(DType::kBF16).to(DType::kF64).to_vector<double>(),
            (std::vector<double>{-2.5, 0.0, 1.0, 3.140625, 65536.0}));  // bf16 rounds 65504 up
  EXPECT_EQ(x.to(DType::kF16).to(DType::kF64).to_vector<double>(), values);
  EXPECT_EQ(x.to(DType::kI32).to_vector<int>(), (std::vector<int>{-2, 0, 1, 3, 65504}));
  EXPECT_EQ(x.to(DType::kBool).to_vector<int>(), (std::vector<int>{1, 0, 1, 1, 1}));
  // f16 subnormals and overflow.
  Tensor tiny = Tensor::from_vector(std::vector<double>{5.960464477539063e-08, 1e6}, {2}, DType::kF64);
  EXPECT_EQ(tiny.to(DType::kF16).to(DType::kF64).to_vector<double>(),
            (std::vector<double>{5.960464477539063e-08, std::numeric_limits<double>::infinity()}));
}

TEST(Tensor, CloneIsIndependent) {
  Tensor x = Tensor::ones({3});
  Tensor y = x.clone();
  y.fill_(2);
  EXPECT_EQ(x.to_vector<float>(), (std::vector<float>{1, 1, 1}));
}

TEST(Tensor, PrintsShapeAndDtype) {
  std::string text = Tensor::zeros({2, 2}, DType::kBF16).to_string();
  EXPECT_NE(text.find("shape=(2, 2)"), std::string::npos) << text;
  EXPECT_NE(text.find("dtype=bf16"), std::string::npos) << text;
}

TEST(Tensor, ItemRejectsManyElements) {
  EXPECT_THROW(Tensor::zeros({2}).item(), Error);
}

TEST(Tensor, CudaWithoutDeviceFailsClearly) {
  if (cuda_available()) GTEST_SKIP() << "a CUDA device is present; the failure path is not reachable";
  try {
    Tensor::zeros({2}).to(Device::CUDA(0)).numel();
    // Built with CUDA but no device: the allocator must refuse.
    FAIL() << "expected an error moving a tensor to a missing CUDA device";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("CUDA"), std::string::npos) << error.what();
  }
}

}  // namespace
}  // namespace sy

namespace sy {
namespace {

TEST(CpuAllocator, ReusesLargeFreedBlocksAndEmptiesItsCache) {
  cpu_empty_cache();
  const size_t before = cpu_allocator_stats().allocations;
  void* first = nullptr;
  {
    Tensor big = Tensor::empty({1 << 20});  // 4 MiB
    first = big.storage()->data();
  }
  EXPECT_EQ(cpu_allocator_stats().cached_bytes, size_t{4} << 20);
  Tensor again = Tensor::empty({1 << 20});
  EXPECT_EQ(again.storage()->data(), first);
  EXPECT_EQ(cpu_allocator_stats().allocations, before + 1);
  EXPECT_EQ(cpu_allocator_stats().cached_bytes, 0u);
  again = Tensor();
  cpu_empty_cache();
  EXPECT_EQ(cpu_allocator_stats().cached_bytes, 0u);
}

}  // namespace
}  // namespace sy
