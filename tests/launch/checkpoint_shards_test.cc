// Box assembly for sharded checkpoints, in one process: resharding a tensor saved as 1, 2 or 4
// blocks into boxes of another split, reads of only the overlapping blocks, and the refusals
// (gaps, overlaps, out-of-range boxes, blocks of the wrong shape).
#include "launch/checkpoint_shards.h"

#include <gtest/gtest.h>

#include <cstring>

namespace sy {
namespace {

// The global tensor of every test, (4, 6) or (4, 3, 2): element (i, j[, k]) is 100 i + 10 j + k,
// so a value tells where it came from.
float global_value(const std::vector<int64_t>& index) {
  float value = 0;
  float scale = 100;
  for (int64_t coordinate : index) {
    value += scale * static_cast<float>(coordinate);
    scale /= 10;
  }
  return value;
}

// The values of `region` of the global tensor, computed element by element (the reference).
Tensor region_values(const TensorRegion& region, DType dtype = DType::kF32) {
  std::vector<float> values;
  std::vector<int64_t> index(region.sizes.size(), 0);
  int64_t count = 1;
  for (int64_t size : region.sizes) count *= size;
  for (int64_t n = 0; n < count; ++n) {
    std::vector<int64_t> global(index.size());
    for (size_t d = 0; d < index.size(); ++d) global[d] = region.offsets[d] + index[d];
    values.push_back(global_value(global));
    for (int64_t d = static_cast<int64_t>(index.size()) - 1; d >= 0; --d) {
      if (++index[d] < region.sizes[d]) break;
      index[d] = 0;
    }
  }
  return Tensor::from_vector(values, region.sizes, dtype);
}

std::string bytes_of(const Tensor& tensor) {
  Tensor host = tensor.contiguous();
  return std::string(static_cast<const char*>(host.data_ptr()), host.nbytes());
}

// `parts` equal blocks of `shape` along dim `dim`.
std::vector<TensorRegion> split(const Shape& shape, int64_t dim, int64_t parts) {
  std::vector<TensorRegion> blocks;
  for (int64_t p = 0; p < parts; ++p) {
    TensorRegion block = whole_region(shape);
    block.sizes[dim] = shape[dim] / parts;
    block.offsets[dim] = p * block.sizes[dim];
    blocks.push_back(block);
  }
  return blocks;
}

// Assembles `wanted` from `blocks` (their values from the global tensor), counting the reads.
absl::StatusOr<Tensor> assemble(const Shape& shape, const std::vector<TensorRegion>& blocks, const TensorRegion& wanted,
                                int* reads = nullptr, DType dtype = DType::kF32) {
  return assemble_region("experts.w1", shape, dtype, blocks,
                         [&](size_t i) -> absl::StatusOr<Tensor> {
                           if (reads != nullptr) ++*reads;
                           return region_values(blocks[i], dtype);
                         },
                         wanted);
}

TEST(CheckpointShards, ReshardsTwoOrFourBlocksIntoOneTwoOrFour) {
  const Shape shape = {4, 3, 2};
  for (int64_t saved : {1, 2, 4}) {
    for (int64_t loaded : {1, 2, 4}) {
      for (const TensorRegion& wanted : split(shape, 0, loaded)) {
        int reads = 0;
        absl::StatusOr<Tensor> values = assemble(shape, split(shape, 0, saved), wanted, &reads);
        ASSERT_TRUE(values.ok()) << values.status();
        EXPECT_EQ(values->shape(), wanted.sizes);
        EXPECT_EQ(bytes_of(*values), bytes_of(region_values(wanted)))
            << saved << " blocks into " << loaded << ", box " << region_string(wanted);
        // Only the blocks that overlap the box are read.
        EXPECT_EQ(reads, std::max<int64_t>(saved / loaded, 1)) << saved << " blocks into " << loaded;
      }
    }
  }
}

TEST(CheckpointShards, BoxesAcrossBlocksInEveryDimension) {
  // Saved as a 2 x 3 grid of (2, 2) blocks; wanted: a box straddling four of them, a single
  // column, a single element, and the whole.
  const Shape shape = {4, 6};
  std::vector<TensorRegion> grid;
  for (int64_t i = 0; i < 2; ++i) {
    for (int64_t j = 0; j < 3; ++j) grid.push_back({{2 * i, 2 * j}, {2, 2}});
  }
  for (const TensorRegion& wanted : {TensorRegion{{1, 1}, {2, 3}}, TensorRegion{{0, 5}, {4, 1}},
                                     TensorRegion{{3, 4}, {1, 1}}, whole_region(shape)}) {
    absl::StatusOr<Tensor> values = assemble(shape, grid, wanted);
    ASSERT_TRUE(values.ok()) << values.status();
    EXPECT_EQ(bytes_of(*values), bytes_of(region_values(wanted))) << region_string(wanted);
  }
}

TEST(CheckpointShards, HalfPrecisionAndScalarTensorsCopyExactly) {
  const Shape shape = {4, 6};
  const TensorRegion wanted{{1, 0}, {2, 6}};
  absl::StatusOr<Tensor> values = assemble(shape, split(shape, 1, 3), wanted, nullptr, DType::kBF16);
  ASSERT_TRUE(values.ok()) << values.status();
  EXPECT_EQ(values->dtype(), DType::kBF16);
  EXPECT_EQ(bytes_of(*values), bytes_of(region_values(wanted, DType::kBF16)));

  // A 0-d tensor (the optimizer's step) is one block holding one element.
  absl::StatusOr<Tensor> step = assemble_region(
      "step", {}, DType::kI64, {whole_region({})},
      [](size_t) -> absl::StatusOr<Tensor> { return Tensor::scalar(7, DType::kI64); }, whole_region({}));
  ASSERT_TRUE(step.ok()) << step.status();
  EXPECT_EQ(step->item<int64_t>(), 7);
}

TEST(CheckpointShards, GapsOverlapsAndOutOfRangeBlocksAreRefusedNamingTheTensor) {
  const Shape shape = {4, 3, 2};
  std::vector<TensorRegion> gap = split(shape, 0, 4);
  gap.erase(gap.begin() + 2);
  absl::Status status = check_tiling("experts.w1", shape, gap);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(status.message().find("tensor experts.w1 (4, 3, 2): its 3 blocks cover 18 of its 24 elements"),
            std::string::npos)
      << status;
  // The gap is refused even when the wanted box lies in the blocks that are there.
  EXPECT_FALSE(assemble(shape, gap, split(shape, 0, 4)[0]).ok());

  std::vector<TensorRegion> overlap = split(shape, 0, 2);
  overlap.push_back({{1, 0, 0}, {1, 3, 2}});
  status = check_tiling("experts.w1", shape, overlap);
  EXPECT_NE(status.message().find("the blocks [0:2, 0:3, 0:2] and [1:2, 0:3, 0:2] overlap"), std::string::npos)
      << status;

  std::vector<TensorRegion> outside = split(shape, 0, 2);
  outside[1].offsets[0] = 3;
  status = check_tiling("experts.w1", shape, outside);
  EXPECT_NE(status.message().find("the block [3:5, 0:3, 0:2] does not lie inside its global shape (4, 3, 2)"),
            std::string::npos)
      << status;

  // A wanted box outside the tensor (a model of 8 experts reading a checkpoint of 4).
  absl::StatusOr<Tensor> values = assemble(shape, split(shape, 0, 2), TensorRegion{{4, 0, 0}, {4, 3, 2}});
  EXPECT_NE(values.status().message().find("tensor experts.w1: the wanted box [4:8, 0:3, 0:2] does not lie inside "
                                           "its global shape (4, 3, 2)"),
            std::string::npos)
      << values.status();
}

TEST(CheckpointShards, ABlockOfTheWrongShapeOrDtypeNamesTheTensorAndBothShapes) {
  const Shape shape = {4, 3, 2};
  const std::vector<TensorRegion> blocks = split(shape, 0, 2);
  absl::StatusOr<Tensor> values = assemble_region(
      "experts.w1", shape, DType::kF32, blocks,
      [](size_t) -> absl::StatusOr<Tensor> { return Tensor::zeros({2, 2, 3}); }, whole_region(shape));
  EXPECT_EQ(values.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(values.status().message().find("tensor experts.w1: the block [0:2, 0:3, 0:2] is f32 (2, 2, 3), "
                                           "expected f32 (2, 3, 2)"),
            std::string::npos)
      << values.status();
  values = assemble_region(
      "experts.w1", shape, DType::kF32, blocks,
      [](size_t) -> absl::StatusOr<Tensor> { return Tensor::zeros({2, 3, 2}, DType::kBF16); }, whole_region(shape));
  EXPECT_NE(values.status().message().find("is bf16 (2, 3, 2), expected f32 (2, 3, 2)"), std::string::npos)
      << values.status();
  // A failed read comes back as it is.
  values = assemble_region(
      "experts.w1", shape, DType::kF32, blocks,
      [](size_t) -> absl::StatusOr<Tensor> { return absl::NotFoundError("model-rank00001.safetensors: missing"); },
      whole_region(shape));
  EXPECT_EQ(values.status().message(), "model-rank00001.safetensors: missing");
}

}  // namespace
}  // namespace sy
