// cat / stack / split / chunk through the op harness, then piece counts (torch semantics),
// views and shape errors.
#include "core/ops/ops.h"
#include "tests/support/op_harness.h"

namespace sy::testing {
namespace {

// Concatenation of 2-D arrays along dim (0 or 1), by explicit row/column loops.
HostArray cat_reference_2d(const std::vector<HostArray>& parts, int64_t dim) {
  int64_t rows = 0, columns = 0;
  for (const HostArray& part : parts) {
    if (dim == 0) rows += part.shape[0];
    if (dim == 1) columns += part.shape[1];
  }
  if (dim == 0) columns = parts[0].shape[1];
  if (dim == 1) rows = parts[0].shape[0];
  HostArray out{{rows, columns}, std::vector<double>(rows * columns)};
  int64_t start = 0;
  for (const HostArray& part : parts) {
    for (int64_t r = 0; r < part.shape[0]; ++r) {
      for (int64_t c = 0; c < part.shape[1]; ++c) {
        int64_t out_r = dim == 0 ? start + r : r, out_c = dim == 1 ? start + c : c;
        out.values[out_r * columns + out_c] = part.values[r * part.shape[1] + c];
      }
    }
    start += part.shape[dim];
  }
  return out;
}

// Columns [begin, end) of a 2-D array.
HostArray columns_of(const HostArray& x, int64_t begin, int64_t end) {
  HostArray out{{x.shape[0], end - begin}, {}};
  for (int64_t r = 0; r < x.shape[0]; ++r) {
    for (int64_t c = begin; c < end; ++c) out.values.push_back(x.values[r * x.shape[1] + c]);
  }
  return out;
}

std::vector<OpCase> shape_cases() {
  return {
      {.name = "CatMixedWidthsDim1",
       .inputs = {{.shape = {2, 3}}, {.shape = {2, 1}}, {.shape = {2, 4}}},
       .op = [](const std::vector<Tensor>& x) { return cat({x[0], x[1], x[2]}, 1); },
       .reference = [](const std::vector<HostArray>& x) { return cat_reference_2d(x, 1); }},
      {.name = "CatMixedHeightsDim0",
       .inputs = {{.shape = {1, 3}}, {.shape = {3, 3}}},
       .op = [](const std::vector<Tensor>& x) { return cat({x[0], x[1]}, 0); },
       .reference = [](const std::vector<HostArray>& x) { return cat_reference_2d(x, 0); }},
      {.name = "CatSameTensorTwice",
       .inputs = {{.shape = {2, 2}}},
       .op = [](const std::vector<Tensor>& x) { return cat({x[0], x[0]}, -1); },
       .reference = [](const std::vector<HostArray>& x) { return cat_reference_2d({x[0], x[0]}, 1); }},
      {.name = "StackDim1",
       .inputs = {{.shape = {2, 3}}, {.shape = {2, 3}}},
       .op = [](const std::vector<Tensor>& x) { return stack({x[0], x[1]}, 1); },
       .reference = [](const std::vector<HostArray>& x) {
         // out[i][k][j] = x[k][i][j]
         HostArray out{{2, 2, 3}, std::vector<double>(12)};
         for (int64_t i = 0; i < 2; ++i) {
           for (int64_t k = 0; k < 2; ++k) {
             for (int64_t j = 0; j < 3; ++j) out.values[(i * 2 + k) * 3 + j] = x[k].values[i * 3 + j];
           }
         }
         return out;
       }},
      {.name = "StackLastDim",
       .inputs = {{.shape = {3}}, {.shape = {3}}, {.shape = {3}}},
       .op = [](const std::vector<Tensor>& x) { return stack({x[0], x[1], x[2]}, -1); },
       .reference = [](const std::vector<HostArray>& x) {
         HostArray out{{3, 3}, std::vector<double>(9)};
         for (int64_t i = 0; i < 3; ++i) {
           for (int64_t k = 0; k < 3; ++k) out.values[i * 3 + k] = x[k].values[i];
         }
         return out;
       }},
      {.name = "SplitSizesMiddlePiece",
       .inputs = {{.shape = {2, 6}}},
       .op = [](const std::vector<Tensor>& x) { return split(x[0], std::vector<int64_t>{1, 3, 2}, 1)[1]; },
       .reference = [](const std::vector<HostArray>& x) { return columns_of(x[0], 1, 4); }},
      {.name = "SplitPiecesReassembledOutOfOrder",
       .inputs = {{.shape = {3, 5}}},
       .op = [](const std::vector<Tensor>& x) {
         std::vector<Tensor> pieces = split(x[0], 2, 1);  // widths 2, 2, 1
         return cat({pieces[2], pieces[0], pieces[1] * 3.0}, 1);
       },
       .reference = [](const std::vector<HostArray>& x) {
         HostArray scaled = columns_of(x[0], 2, 4);
         for (double& v : scaled.values) v *= 3;
         return cat_reference_2d({columns_of(x[0], 4, 5), columns_of(x[0], 0, 2), scaled}, 1);
       }},
      {.name = "ChunkSecondOfThree",
       .inputs = {{.shape = {2, 7}}},
       .op = [](const std::vector<Tensor>& x) { return chunk(x[0], 3, 1)[1]; },
       .reference = [](const std::vector<HostArray>& x) { return columns_of(x[0], 3, 6); }},
  };
}

INSTANTIATE_TEST_SUITE_P(Shape, OpCaseTest, ::testing::ValuesIn(shape_cases()), OpCaseName);

std::vector<int64_t> widths(const std::vector<Tensor>& pieces, int64_t dim) {
  std::vector<int64_t> out;
  for (const Tensor& piece : pieces) out.push_back(piece.size(dim));
  return out;
}

TEST(Shape, ChunkGivesCeilSizedPiecesAsTorch) {
  EXPECT_EQ(widths(chunk(Tensor::zeros({6}), 4), 0), (std::vector<int64_t>{2, 2, 2}));
  EXPECT_EQ(widths(chunk(Tensor::zeros({7}), 3), 0), (std::vector<int64_t>{3, 3, 1}));
  EXPECT_EQ(widths(chunk(Tensor::zeros({5}), 5), 0), (std::vector<int64_t>{1, 1, 1, 1, 1}));
  EXPECT_EQ(widths(chunk(Tensor::zeros({2, 3}), 8, 1), 1), (std::vector<int64_t>{1, 1, 1}));
  EXPECT_EQ(widths(chunk(Tensor::zeros({0}), 3), 0), (std::vector<int64_t>{0, 0, 0}));
}

TEST(Shape, SplitBySizeLeavesASmallerLastPiece) {
  EXPECT_EQ(widths(split(Tensor::zeros({3, 7}), 3, -1), 1), (std::vector<int64_t>{3, 3, 1}));
  EXPECT_EQ(widths(split(Tensor::zeros({0}), 2), 0), (std::vector<int64_t>{0}));
}

TEST(Shape, SplitPiecesAreViewsOfTheInput) {
  Tensor x = Tensor::zeros({4, 2});
  std::vector<Tensor> pieces = split(x, std::vector<int64_t>{1, 3}, 0);
  pieces[1].fill_(5.0);
  EXPECT_EQ(x.to_vector<float>(), (std::vector<float>{0, 0, 5, 5, 5, 5, 5, 5}));
}

TEST(Shape, CatPromotesDtypes) {
  Tensor a = Tensor::from_vector(std::vector<int64_t>{1, 2}, {2}, DType::kI64);
  Tensor b = Tensor::from_vector(std::vector<float>{0.5f}, {1});
  Tensor out = cat({a, b});
  EXPECT_EQ(out.dtype(), DType::kF32);
  EXPECT_EQ(out.to_vector<float>(), (std::vector<float>{1, 2, 0.5f}));
}

TEST(Shape, MismatchedShapesAreRejected) {
  try {
    cat({Tensor::zeros({2, 3}), Tensor::zeros({3, 3})}, 1);
    FAIL() << "expected a shape error";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("(3, 3) does not match (2, 3)"), std::string::npos) << error.what();
  }
  EXPECT_THROW(stack({Tensor::zeros({2}), Tensor::zeros({3})}), Error);
  EXPECT_THROW(split(Tensor::zeros({5}), std::vector<int64_t>{2, 2}), Error);
}

}  // namespace
}  // namespace sy::testing
