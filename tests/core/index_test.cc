// Indexing ops through the op harness (naive references, layouts, finite differences), then
// sort stability, top-k tie-breaks, counting and index-range errors.
#include <algorithm>
#include <cmath>
#include <map>
#include <random>

#include "core/ops/ops.h"
#include "tests/support/op_harness.h"
#include "tests/support/torch_reference.h"

namespace sy::testing {
namespace {

std::vector<int64_t> unravel(int64_t flat, const Shape& shape) {
  std::vector<int64_t> position(shape.size());
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    position[d] = flat % shape[d];
    flat /= shape[d];
  }
  return position;
}

// A fixed i64 index tensor (not differentiable) for InputSpec.
InputSpec index_input(std::vector<int64_t> values, Shape shape) {
  return {.shape = shape, .differentiable = false, .dtype = DType::kI64,
          .make = [values, shape] { return Tensor::from_vector(values, shape, DType::kI64); }};
}

// The elements along `dim` with every other coordinate fixed.
struct Line {
  std::vector<int64_t> flats;  // flat indices of the line's elements, in order along dim
};
std::vector<Line> lines_along(const Shape& shape, int64_t dim) {
  std::vector<Line> lines;
  HostArray layout{shape, {}};
  for (int64_t flat = 0; flat < shape_numel(shape); ++flat) {
    std::vector<int64_t> position = unravel(flat, shape);
    if (position[dim] != 0) continue;
    Line line;
    for (int64_t i = 0; i < shape[dim]; ++i) {
      position[dim] = i;
      line.flats.push_back(layout.index(position));
    }
    lines.push_back(line);
  }
  return lines;
}

// Sorted values (or their indices) along dim by insertion, which is stable by construction.
HostArray sort_reference(const HostArray& x, int64_t dim, bool descending, bool want_indices) {
  HostArray out = x;
  for (const Line& line : lines_along(x.shape, dim)) {
    std::vector<int64_t> order;
    for (int64_t i = 0; i < static_cast<int64_t>(line.flats.size()); ++i) {
      double key = x.values[line.flats[i]];
      auto at = order.end();
      while (at != order.begin()) {
        double previous = x.values[line.flats[*(at - 1)]];
        if (descending ? previous >= key : previous <= key) break;
        --at;
      }
      order.insert(at, i);
    }
    for (size_t i = 0; i < order.size(); ++i) {
      out.values[line.flats[i]] = want_indices ? order[i] : x.values[line.flats[order[i]]];
    }
  }
  return out;
}

// The k best along dim by repeated selection (first best wins ties).
HostArray topk_reference(const HostArray& x, int64_t k, int64_t dim, bool largest, bool want_indices) {
  Shape shape = x.shape;
  shape[dim] = k;
  HostArray out{shape, std::vector<double>(shape_numel(shape))};
  std::vector<Line> in_lines = lines_along(x.shape, dim), out_lines = lines_along(shape, dim);
  for (size_t l = 0; l < in_lines.size(); ++l) {
    std::vector<bool> taken(in_lines[l].flats.size(), false);
    for (int64_t j = 0; j < k; ++j) {
      int64_t best = -1;
      for (size_t i = 0; i < taken.size(); ++i) {
        if (taken[i]) continue;
        double value = x.values[in_lines[l].flats[i]];
        if (best < 0 || (largest ? value > x.values[in_lines[l].flats[best]]
                                 : value < x.values[in_lines[l].flats[best]])) {
          best = static_cast<int64_t>(i);
        }
      }
      taken[best] = true;
      out.values[out_lines[l].flats[j]] = want_indices ? best : x.values[in_lines[l].flats[best]];
    }
  }
  return out;
}

HostArray gather_reference(const HostArray& x, int64_t dim, const HostArray& index) {
  HostArray out{index.shape, std::vector<double>(index.numel())};
  for (int64_t flat = 0; flat < index.numel(); ++flat) {
    std::vector<int64_t> position = unravel(flat, index.shape);
    position[dim] = static_cast<int64_t>(index.values[flat]);
    out.values[flat] = x.values[x.index(position)];
  }
  return out;
}

HostArray scatter_add_reference(const HostArray& x, int64_t dim, const HostArray& index, const HostArray& src) {
  HostArray out = x;
  for (int64_t flat = 0; flat < index.numel(); ++flat) {
    std::vector<int64_t> position = unravel(flat, index.shape);
    double value = src.values[src.index(position)];
    position[dim] = static_cast<int64_t>(index.values[flat]);
    out.values[x.index(position)] += value;
  }
  return out;
}

HostArray index_select_reference(const HostArray& x, int64_t dim, const HostArray& index) {
  Shape shape = x.shape;
  shape[dim] = index.numel();
  HostArray out{shape, std::vector<double>(shape_numel(shape))};
  for (int64_t flat = 0; flat < out.numel(); ++flat) {
    std::vector<int64_t> position = unravel(flat, shape);
    position[dim] = static_cast<int64_t>(index.values[position[dim]]);
    out.values[flat] = x.values[x.index(position)];
  }
  return out;
}

HostArray index_add_reference(const HostArray& x, int64_t dim, const HostArray& index,
                              const HostArray& source, double alpha) {
  HostArray out = x;
  for (int64_t flat = 0; flat < source.numel(); ++flat) {
    std::vector<int64_t> position = unravel(flat, source.shape);
    position[dim] = static_cast<int64_t>(index.values[position[dim]]);
    out.values[x.index(position)] += alpha * source.values[flat];
  }
  return out;
}

HostArray cumsum_reference(const HostArray& x, int64_t dim) {
  HostArray out = x;
  for (const Line& line : lines_along(x.shape, dim)) {
    double running = 0;
    for (int64_t flat : line.flats) {
      running += x.values[flat];
      out.values[flat] = running;
    }
  }
  return out;
}

std::vector<OpCase> index_cases() {
  return {
      {.name = "SortLastDim",
       .inputs = {{.shape = {3, 5}}},
       .op = [](const std::vector<Tensor>& x) { return sort(x[0]).first; },
       .reference = [](const std::vector<HostArray>& x) { return sort_reference(x[0], 1, false, false); }},
      {.name = "SortDescendingDim0",
       .inputs = {{.shape = {4, 3, 2}}},
       .op = [](const std::vector<Tensor>& x) { return sort(x[0], 0, true).first; },
       .reference = [](const std::vector<HostArray>& x) { return sort_reference(x[0], 0, true, false); }},
      {.name = "SortIndicesDim1",
       .inputs = {{.shape = {2, 6, 3}}},
       .op = [](const std::vector<Tensor>& x) { return sort(x[0], 1).second; },
       .reference = [](const std::vector<HostArray>& x) { return sort_reference(x[0], 1, false, true); },
       .check_gradient = false},
      {.name = "ArgsortDescending",
       .inputs = {{.shape = {3, 7}}},
       .op = [](const std::vector<Tensor>& x) { return argsort(x[0], -1, true); },
       .reference = [](const std::vector<HostArray>& x) { return sort_reference(x[0], 1, true, true); },
       .check_gradient = false},
      {.name = "TopkLargestLastDim",
       .inputs = {{.shape = {3, 6}}},
       .op = [](const std::vector<Tensor>& x) { return topk(x[0], 3).first; },
       .reference = [](const std::vector<HostArray>& x) { return topk_reference(x[0], 3, 1, true, false); }},
      {.name = "TopkSmallestDim0",
       .inputs = {{.shape = {5, 2, 3}}},
       .op = [](const std::vector<Tensor>& x) { return topk(x[0], 2, 0, false).first; },
       .reference = [](const std::vector<HostArray>& x) { return topk_reference(x[0], 2, 0, false, false); }},
      {.name = "TopkIndices",
       .inputs = {{.shape = {4, 5}}},
       .op = [](const std::vector<Tensor>& x) { return topk(x[0], 2, 1).second; },
       .reference = [](const std::vector<HostArray>& x) { return topk_reference(x[0], 2, 1, true, true); },
       .check_gradient = false},
      {.name = "GatherDim1",
       .inputs = {{.shape = {3, 4}}, index_input({3, 0, 0, 1, 2, 2, 2, 1, 3, 0, 1, 3, 0, 0, 2}, {3, 5})},
       .op = [](const std::vector<Tensor>& x) { return gather(x[0], 1, x[1]); },
       .reference = [](const std::vector<HostArray>& x) { return gather_reference(x[0], 1, x[1]); },
       .cuda = true,
       .cuda_tolerance = 1e-5},
      {.name = "GatherDim0SmallerIndex",
       .inputs = {{.shape = {4, 3}}, index_input({3, 1, 0, 1, 3, 3}, {2, 3})},
       .op = [](const std::vector<Tensor>& x) { return gather(x[0], 0, x[1]); },
       .reference = [](const std::vector<HostArray>& x) { return gather_reference(x[0], 0, x[1]); },
       .cuda = true,
       .cuda_tolerance = 1e-5},
      {.name = "ScatterAddDim0Repeats",
       .inputs = {{.shape = {4, 3}}, index_input({0, 3, 3, 0, 1, 3, 2, 0, 0, 0, 3, 1, 2, 2, 3}, {5, 3}), {.shape = {5, 3}}},
       .op = [](const std::vector<Tensor>& x) { return scatter_add(x[0], 0, x[1], x[2]); },
       .reference = [](const std::vector<HostArray>& x) { return scatter_add_reference(x[0], 0, x[1], x[2]); },
       .cuda = true,
       .cuda_tolerance = 1e-5},
      {.name = "ScatterAddDim1SourceLargerThanIndex",
       .inputs = {{.shape = {2, 3}}, index_input({2, 2, 0, 1, 1, 0}, {2, 3}), {.shape = {3, 4}}},
       .op = [](const std::vector<Tensor>& x) { return scatter_add(x[0], 1, x[1], x[2]); },
       .reference = [](const std::vector<HostArray>& x) { return scatter_add_reference(x[0], 1, x[1], x[2]); },
       .cuda = true,
       .cuda_tolerance = 1e-5},
      {.name = "IndexSelectDim1",
       .inputs = {{.shape = {3, 5}}, index_input({4, 0, 4, 2}, {4})},
       .op = [](const std::vector<Tensor>& x) { return index_select(x[0], 1, x[1]); },
       .reference = [](const std::vector<HostArray>& x) { return index_select_reference(x[0], 1, x[1]); }},
      {.name = "IndexSelectDim0Rows",
       .inputs = {{.shape = {4, 2, 3}}, index_input({1, 1, 3}, {3})},
       .op = [](const std::vector<Tensor>& x) { return index_select(x[0], 0, x[1]); },
       .reference = [](const std::vector<HostArray>& x) { return index_select_reference(x[0], 0, x[1]); }},
      {.name = "IndexAddDim0Alpha",
       .inputs = {{.shape = {5, 2}}, index_input({1, 3, 1, 0}, {4}), {.shape = {4, 2}}},
       .op = [](const std::vector<Tensor>& x) { return index_add(x[0], 0, x[1], x[2], 0.5); },
       .reference = [](const std::vector<HostArray>& x) { return index_add_reference(x[0], 0, x[1], x[2], 0.5); }},
      {.name = "IndexAddDim1",
       .inputs = {{.shape = {2, 3, 2}}, index_input({2, 0, 2, 2}, {4}), {.shape = {2, 4, 2}}},
       .op = [](const std::vector<Tensor>& x) { return index_add(x[0], 1, x[1], x[2]); },
       .reference = [](const std::vector<HostArray>& x) { return index_add_reference(x[0], 1, x[1], x[2], 1.0); }},
      {.name = "CumsumDim0",
       .inputs = {{.shape = {4, 3}}},
       .op = [](const std::vector<Tensor>& x) { return cumsum(x[0], 0); },
       .reference = [](const std::vector<HostArray>& x) { return cumsum_reference(x[0], 0); }},
      {.name = "CumsumMiddleDim",
       .inputs = {{.shape = {2, 5, 3}}},
       .op = [](const std::vector<Tensor>& x) { return cumsum(x[0], -2); },
       .reference = [](const std::vector<HostArray>& x) { return cumsum_reference(x[0], 1); }},
  };
}

INSTANTIATE_TEST_SUITE_P(Index, OpCaseTest, ::testing::ValuesIn(index_cases()), OpCaseName);

// Keys from {0, 1, 2} in a scrambled order; the expected stable order lists each key's
// positions in increasing order.
std::vector<int64_t> stable_order(const std::vector<float>& keys, bool descending) {
  std::vector<int64_t> order;
  for (int key = 0; key < 3; ++key) {
    float wanted = static_cast<float>(descending ? 2 - key : key);
    for (size_t i = 0; i < keys.size(); ++i) {
      if (keys[i] == wanted) order.push_back(static_cast<int64_t>(i));
    }
  }
  return order;
}

TEST(Index, SortIsStableWithManyTiesAscendingAndDescending) {
  // 64 rows of 2048: large enough that rows are sorted on several cores.
  const int64_t rows = 64, n = 2048;
  std::vector<float> keys(rows * n);
  for (int64_t i = 0; i < rows * n; ++i) keys[i] = static_cast<float>((i * 7 + i / 5) % 3);
  Tensor x = Tensor::from_vector(keys, {rows, n});
  for (bool descending : {false, true}) {
    std::vector<int64_t> indices = sort(x, 1, descending).second.to_vector<int64_t>();
    for (int64_t row = 0; row < rows; ++row) {
      std::vector<float> row_keys(keys.begin() + row * n, keys.begin() + (row + 1) * n);
      std::vector<int64_t> got(indices.begin() + row * n, indices.begin() + (row + 1) * n);
      ASSERT_EQ(got, stable_order(row_keys, descending)) << "row " << row << " descending " << descending;
    }
  }
}

TEST(Index, SortAlongDim0KeepsTiesInIndexOrder) {
  Tensor x = Tensor::from_vector(std::vector<float>{2, 1, 2, 1, 2, 1}, {6, 1});
  EXPECT_EQ(argsort(x, 0).to_vector<int64_t>(), (std::vector<int64_t>{1, 3, 5, 0, 2, 4}));
  EXPECT_EQ(argsort(x, 0, true).to_vector<int64_t>(), (std::vector<int64_t>{0, 2, 4, 1, 3, 5}));
}

TEST(Index, SortPutsNanLast) {
  Tensor x = Tensor::from_vector(std::vector<float>{1, NAN, 0, 1}, {4});
  auto [values, indices] = sort(x);
  EXPECT_EQ(indices.to_vector<int64_t>(), (std::vector<int64_t>{2, 0, 3, 1}));
  EXPECT_TRUE(std::isnan(values.to_vector<double>()[3]));
  EXPECT_EQ(argsort(x, 0, true).to_vector<int64_t>(), (std::vector<int64_t>{1, 0, 3, 2}));
}

TEST(Index, TopkBreaksTiesByLowerIndex) {
  Tensor x = Tensor::from_vector(std::vector<float>{1, 3, 3, 2, 3, 0, 0}, {7});
  auto [values, indices] = topk(x, 3);
  EXPECT_EQ(values.to_vector<float>(), (std::vector<float>{3, 3, 3}));
  EXPECT_EQ(indices.to_vector<int64_t>(), (std::vector<int64_t>{1, 2, 4}));
  auto [low_values, low_indices] = topk(x, 3, 0, false);
  EXPECT_EQ(low_values.to_vector<float>(), (std::vector<float>{0, 0, 1}));
  EXPECT_EQ(low_indices.to_vector<int64_t>(), (std::vector<int64_t>{5, 6, 0}));
}

TEST(Index, TopkOnManyRowsIsTheHeadOfAStableSort) {
  // Many ties and enough rows to run on several cores: top-k must equal the first k of the
  // stable sort in the same direction, indices included.
  const int64_t rows = 64, n = 2048, k = 100;
  std::vector<float> keys(rows * n);
  for (int64_t i = 0; i < rows * n; ++i) keys[i] = static_cast<float>((i * 13 + i / 7) % 5);
  Tensor x = Tensor::from_vector(keys, {rows, n});
  for (bool largest : {true, false}) {
    auto [values, indices] = topk(x, k, 1, largest);
    auto [sorted, order] = sort(x, 1, largest);
    EXPECT_EQ(indices.to_vector<int64_t>(), order.narrow(1, 0, k).to_vector<int64_t>()) << largest;
    EXPECT_EQ(values.to_vector<float>(), sorted.narrow(1, 0, k).to_vector<float>()) << largest;
  }
}

TEST(Index, TopkGradientGoesToTheChosenIndices) {
  Tensor x = Tensor::from_vector(std::vector<double>{5, 1, 5, 4, 2, 7}, {2, 3}, DType::kF64);
  x.set_requires_grad(true);
  auto [values, indices] = topk(x, 2, 1);
  EXPECT_EQ(indices.to_vector<int64_t>(), (std::vector<int64_t>{0, 2, 2, 0}));
  Tensor weights = Tensor::from_vector(std::vector<double>{10, 20, 30, 40}, {2, 2}, DType::kF64);
  sum(values * weights).backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{10, 0, 20, 40, 0, 30}));
}

TEST(Index, BincountCountsWithMinlength) {
  Tensor x = Tensor::from_vector(std::vector<int64_t>{1, 1, 3, 0, 1}, {5}, DType::kI64);
  Tensor counts = bincount(x);
  EXPECT_EQ(counts.dtype(), DType::kI64);
  EXPECT_EQ(counts.to_vector<int64_t>(), (std::vector<int64_t>{1, 3, 0, 1}));
  EXPECT_EQ(bincount(x.to(DType::kI32), 6).to_vector<int64_t>(), (std::vector<int64_t>{1, 3, 0, 1, 0, 0}));
  EXPECT_EQ(bincount(Tensor::zeros({0}, DType::kI64), 3).to_vector<int64_t>(), (std::vector<int64_t>{0, 0, 0}));
  EXPECT_THROW(bincount(Tensor::from_vector(std::vector<int64_t>{2, -1}, {2}, DType::kI64)), Error);
}

TEST(Index, OneHotPutsOneOnePerRow) {
  Tensor x = Tensor::from_vector(std::vector<int64_t>{2, 0, 1, 2}, {2, 2}, DType::kI64);
  Tensor encoded = one_hot(x, 3);
  EXPECT_EQ(encoded.dtype(), DType::kI64);
  EXPECT_EQ(encoded.shape(), (Shape{2, 2, 3}));
  EXPECT_EQ(encoded.to_vector<int64_t>(), (std::vector<int64_t>{0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 1}));
  EXPECT_EQ(one_hot(x, -1).shape(), (Shape{2, 2, 3}));
  EXPECT_THROW(one_hot(x, 2), Error);
}

TEST(Index, CumsumOfIntegersIsI64) {
  Tensor x = Tensor::from_vector(std::vector<int32_t>{1, 2, 3, 4}, {4}, DType::kI32);
  Tensor out = cumsum(x, 0);
  EXPECT_EQ(out.dtype(), DType::kI64);
  EXPECT_EQ(out.to_vector<int64_t>(), (std::vector<int64_t>{1, 3, 6, 10}));
}

// Scatters large enough to split over the cores (a dim other than the scattered one) must
// equal one core's loop exactly: same f32 sums in the same order per target element.
TEST(Index, LargeScatterAddMatchesSerialLoopBitwise) {
  const int64_t rows = 3000, columns = 96, targets = 700;
  std::mt19937 engine(3);
  std::vector<int64_t> picks(rows);
  for (int64_t& v : picks) v = std::uniform_int_distribution<int64_t>(0, targets - 1)(engine);
  Tensor index = Tensor::from_vector(picks, {rows}, DType::kI64);
  Tensor source = randn({rows, columns});
  Tensor base = randn({targets, columns});
  const std::vector<float> src = source.to_vector<float>(), start = base.to_vector<float>();

  // index_add along dim 0 (the MoE un-permute): out[picks[i], j] += 0.5 * src[i, j].
  std::vector<float> expected = start;
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < columns; ++j) expected[picks[i] * columns + j] += 0.5f * src[i * columns + j];
  }
  EXPECT_EQ(index_add(base, 0, index, source, 0.5).to_vector<float>(), expected);

  // scatter_add along the innermost dim of a transposed (columns, rows) view: out[j, picks[i]] += src[i, j].
  Tensor full_index = index.unsqueeze(0).expand({columns, rows}).contiguous();
  Tensor scattered = scatter_add(base.transpose(0, 1).contiguous(), 1, full_index, source.transpose(0, 1));
  std::vector<float> expected_t(columns * targets);
  for (int64_t j = 0; j < columns; ++j) {
    for (int64_t t = 0; t < targets; ++t) expected_t[j * targets + t] = start[t * columns + j];
    for (int64_t i = 0; i < rows; ++i) expected_t[j * targets + picks[i]] += src[i * columns + j];
  }
  EXPECT_EQ(scattered.to_vector<float>(), expected_t);
}

// Runs f, expecting an Error whose message contains every one of `parts`.
template <typename F>
void expect_error_naming(F&& f, const std::vector<std::string>& parts) {
  try {
    f();
    FAIL() << "expected an error";
  } catch (const Error& error) {
    for (const std::string& part : parts) {
      EXPECT_NE(std::string(error.what()).find(part), std::string::npos) << error.what();
    }
  }
}

TEST(Index, OutOfRangeIndexNamesIndexAndSize) {
  Tensor x = Tensor::zeros({3, 4});
  Tensor bad = Tensor::from_vector(std::vector<int64_t>{0, 5}, {2}, DType::kI64);
  expect_error_naming([&] { index_select(x, 1, bad); }, {"index 5", "size 4"});
  expect_error_naming([&] { gather(x, 0, bad.reshape({1, 2})); }, {"index 5", "size 3"});
  expect_error_naming([&] { index_add(x, 0, bad, Tensor::zeros({2, 4})); }, {"index 5", "size 3"});
  Tensor negative = Tensor::from_vector(std::vector<int64_t>{-1}, {1, 1}, DType::kI64);
  expect_error_naming([&] { scatter_add(x, 1, negative, Tensor::ones({1, 1})); }, {"index -1", "size 4"});
}

// ---- against PyTorch (tests/reference/index_ops.py; op codes as there) ----

enum TorchOp : int64_t { kSortOp, kTopkOp, kGatherOp, kScatterAddOp, kIndexSelectOp, kIndexAddOp, kCumsumOp, kCatOp, kCountOp };

Tensor integer(int64_t value) { return Tensor::scalar(static_cast<double>(value), DType::kI64); }

// Uniform f64 values, or small integers (many ties) when `ties`.
Tensor random_values(const Shape& shape, uint64_t seed, bool ties = false) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> uniform(-2, 2);
  std::vector<double> values(shape_numel(shape));
  for (double& v : values) v = ties ? std::floor(uniform(rng)) : uniform(rng);
  return Tensor::from_vector(values, shape, DType::kF64);
}

Tensor random_index(const Shape& shape, int64_t bound, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int64_t> values(shape_numel(shape));
  for (int64_t& v : values) v = static_cast<int64_t>(rng() % bound);
  return Tensor::from_vector(values, shape, DType::kI64);
}

class TorchCases {
 public:
  // Runs `op` on leaves made from x (and other), backpropagates sum(y * upstream) and
  // records y, its gradients and the indices `op` returns (if any) for comparison.
  void add(int64_t code, int64_t dim, const Tensor& x, const Tensor& other, const Tensor& index,
           std::map<std::string, Tensor> scalars,
           const std::function<std::pair<Tensor, Tensor>(const Tensor&, const Tensor&)>& op) {
    Tensor x_leaf = x.clone().set_requires_grad(true);
    Tensor other_leaf = other.defined() ? other.clone().set_requires_grad(true) : Tensor();
    auto [y, indices] = op(x_leaf, other_leaf);
    Tensor upstream = random_values(y.shape(), cases_.size() + 100);
    sum(y * upstream).backward();
    TorchCase torch_case{{{"op", integer(code)}, {"dim", integer(dim)}, {"x", x}, {"upstream", upstream}},
                         {"y", "grad_x"}};
    std::map<std::string, Tensor> mine{{"y", y}, {"grad_x", x_leaf.grad()}};
    if (other.defined()) {
      torch_case.inputs["other"] = other;
      torch_case.outputs.push_back("grad_other");
      mine["grad_other"] = other_leaf.grad();
    }
    if (index.defined()) torch_case.inputs["index"] = index;
    if (indices.defined()) {
      torch_case.outputs.push_back("indices");
      mine["indices"] = indices;
    }
    torch_case.inputs.insert(scalars.begin(), scalars.end());
    cases_.push_back(torch_case);
    ours_.push_back(mine);
  }
  void add_plain(TorchCase torch_case, std::map<std::string, Tensor> mine) {
    cases_.push_back(std::move(torch_case));
    ours_.push_back(std::move(mine));
  }
  void compare() {
    absl::StatusOr<std::vector<TorchOutputs>> torch = run_torch_reference("index_ops.py", cases_);
    ASSERT_TRUE(torch.ok()) << torch.status();
    for (size_t i = 0; i < cases_.size(); ++i) {
      for (const std::string& name : cases_[i].outputs) {
        SCOPED_TRACE(absl::StrCat("case ", i, " (op ", cases_[i].inputs.at("op").item<int64_t>(), ") ", name));
        const Tensor& mine = ours_[i].at(name);
        ASSERT_TRUE(mine.defined()) << "no gradient";
        EXPECT_LT(max_relative_error(mine.to(DType::kF64), (*torch)[i].at(name).to(DType::kF64)), 1e-12)
            << "ours  " << mine << "\ntorch " << (*torch)[i].at(name);
      }
    }
  }

 private:
  std::vector<TorchCase> cases_;
  std::vector<std::map<std::string, Tensor>> ours_;
};

TEST(IndexTorch, MatchesTorchForwardIndicesAndGradients) {
  SY_REQUIRE_TORCH();
  TorchCases cases;
  for (bool descending : {false, true}) {
    for (int64_t dim : {0, -1}) {
      // Integer-valued keys: many ties, so the indices test stability against torch's stable sort.
      cases.add(kSortOp, dim, random_values({6, 9}, 1 + dim, true), Tensor(), Tensor(),
                {{"flag", integer(descending)}}, [=](const Tensor& x, const Tensor&) { return sort(x, dim, descending); });
    }
  }
  for (bool largest : {true, false}) {
    cases.add(kTopkOp, 1, random_values({4, 7, 3}, 2), Tensor(), Tensor(),
              {{"flag", integer(largest)}, {"k", integer(3)}},
              [=](const Tensor& x, const Tensor&) { return topk(x, 3, 1, largest); });
  }
  Tensor gather_index = random_index({3, 6, 2}, 5, 3);
  cases.add(kGatherOp, 1, random_values({3, 5, 4}, 4), Tensor(), gather_index, {},
            [&](const Tensor& x, const Tensor&) { return std::pair(gather(x, 1, gather_index), Tensor()); });
  Tensor scatter_index = random_index({6, 3}, 4, 5);
  cases.add(kScatterAddOp, 0, random_values({4, 3}, 6), random_values({6, 3}, 7), scatter_index, {},
            [&](const Tensor& x, const Tensor& src) { return std::pair(scatter_add(x, 0, scatter_index, src), Tensor()); });
  Tensor select_index = random_index({7}, 4, 8);
  cases.add(kIndexSelectOp, -1, random_values({2, 3, 4}, 9), Tensor(), select_index, {},
            [&](const Tensor& x, const Tensor&) { return std::pair(index_select(x, -1, select_index), Tensor()); });
  cases.add(kIndexAddOp, 1, random_values({2, 4, 3}, 10), random_values({2, 7, 3}, 11), select_index,
            {{"alpha", Tensor::scalar(-1.5, DType::kF64)}},
            [&](const Tensor& x, const Tensor& source) {
              return std::pair(index_add(x, 1, select_index, source, -1.5), Tensor());
            });
  cases.add(kCumsumOp, 1, random_values({3, 4, 5}, 12), Tensor(), Tensor(), {},
            [](const Tensor& x, const Tensor&) { return std::pair(cumsum(x, 1), Tensor()); });
  cases.add(kCatOp, 1, random_values({2, 3}, 13), random_values({2, 5}, 14), Tensor(), {},
            [](const Tensor& x, const Tensor& other) { return std::pair(cat({x, other, x}, 1), Tensor()); });
  Tensor counted = random_index({3, 5}, 6, 15);
  cases.add_plain({{{"op", integer(kCountOp)}, {"dim", integer(0)}, {"x", counted}, {"k", integer(8)}},
                   {"bincount", "one_hot"}},
                  {{"bincount", bincount(counted.reshape({-1}), 8)}, {"one_hot", one_hot(counted, 8)}});
  cases.compare();
}

}  // namespace
}  // namespace sy::testing
