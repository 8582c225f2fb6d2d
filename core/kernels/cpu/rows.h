// Row loops shared by the row-wise nn kernels (softmax, norms, cross-entropy): rows split
// over the cores when the work is large, and a deterministic row blocking for kernels that
// also sum over rows (parameter gradients), so results do not depend on the thread count.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>

#include "core/kernels/cpu/loops.h"

namespace sy::kernels::cpu {

// Calls row(r) for r in [0, rows); on several cores when rows * row_length is large.
template <typename Row>
void for_each_row(int64_t rows, int64_t row_length, Row&& row) {
  if (rows > 1 && rows * row_length >= 2 * kParallelGrain && !omp_in_parallel()) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) row(r);
  } else {
    for (int64_t r = 0; r < rows; ++r) row(r);
  }
}

// A split of the rows into blocks that depends only on the shape: at most kMaxBlocks blocks
// of at least kParallelGrain elements each. Per-block partial sums added in block order
// give the same bits on any number of threads.
struct RowBlocks {
  static constexpr int64_t kMaxBlocks = 64;
  int64_t count = 1;
  int64_t rows_per_block = 0;

  RowBlocks(int64_t rows, int64_t row_length) {
    int64_t min_rows = std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(row_length, 1));
    rows_per_block = std::max(min_rows, (rows + kMaxBlocks - 1) / kMaxBlocks);
    count = std::max<int64_t>(1, (rows + rows_per_block - 1) / rows_per_block);
  }
  int64_t begin(int64_t block) const { return block * rows_per_block; }
  int64_t end(int64_t block, int64_t rows) const { return std::min(rows, (block + 1) * rows_per_block); }
};

// Sum of f(i) for i in [0, n) in f64, with four partial sums (accuracy for long f32 rows).
template <typename F>
inline double sum_f64(int64_t n, F&& f) {
  double partial[4] = {0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    for (int k = 0; k < 4; ++k) partial[k] += static_cast<double>(f(i + k));
  }
  double total = (partial[0] + partial[1]) + (partial[2] + partial[3]);
  for (; i < n; ++i) total += static_cast<double>(f(i));
  return total;
}

}  // namespace sy::kernels::cpu
