// Row-wise stable sort and top-k. Keys are compared in the compute type (f32 for bf16/f16)
// under a strict weak order with NaN above everything; rows go to the cores in parallel.
// Gradient contract (in the op): the values' gradient scatters back through the indices.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#include "core/kernels/cpu/index_kernels.h"
#include "core/kernels/cpu/loops.h"

namespace sy::kernels::cpu {
namespace {

// a < b with NaN the largest value (all NaNs equal).
template <typename V>
bool less_nan_last(V a, V b) {
  if constexpr (std::is_floating_point_v<V>) {
    if (std::isnan(a)) return false;
    if (std::isnan(b)) return true;
  }
  return a < b;
}

// Runs row_fn(row, order) for every row, where order is a per-thread scratch of row_length.
template <typename RowFn>
void for_each_row(int64_t rows, int64_t row_length, RowFn&& row_fn) {
  const bool parallel = rows > 1 && rows * row_length >= 2 * kParallelGrain && !omp_in_parallel();
#pragma omp parallel if (parallel)
  {
    std::vector<int64_t> order(row_length);
#pragma omp for schedule(static)
    for (int64_t row = 0; row < rows; ++row) row_fn(row, order);
  }
}

}  // namespace

void sort_rows(const Tensor& x, int64_t row_length, bool descending, Tensor& values, Tensor& indices) {
  const int64_t rows = row_length == 0 ? 0 : x.numel() / row_length;
  dispatch_all(x.dtype(), [&]<typename T>() {
    using V = compute_t<T>;
    const T* in = x.data<T>();
    T* out = values.data<T>();
    int64_t* out_index = indices.data<int64_t>();
    for_each_row(rows, row_length, [&](int64_t row, std::vector<int64_t>& order) {
      const T* keys = in + row * row_length;
      std::iota(order.begin(), order.end(), 0);
      // stable_sort keeps equal keys in index order in both directions.
      if (descending) {
        std::stable_sort(order.begin(), order.end(), [keys](int64_t a, int64_t b) {
          return less_nan_last<V>(load<T>(keys + b), load<T>(keys + a));
        });
      } else {
        std::stable_sort(order.begin(), order.end(), [keys](int64_t a, int64_t b) {
          return less_nan_last<V>(load<T>(keys + a), load<T>(keys + b));
        });
      }
      for (int64_t i = 0; i < row_length; ++i) {
        std::memcpy(out + row * row_length + i, keys + order[i], sizeof(T));
        out_index[row * row_length + i] = order[i];
      }
    });
  });
}

void topk_rows(const Tensor& x, int64_t row_length, int64_t k, bool largest, Tensor& values,
               Tensor& indices) {
  const int64_t rows = row_length == 0 ? 0 : x.numel() / row_length;
  dispatch_all(x.dtype(), [&]<typename T>() {
    using V = compute_t<T>;
    const T* in = x.data<T>();
    T* out = values.data<T>();
    int64_t* out_index = indices.data<int64_t>();
    for_each_row(rows, row_length, [&](int64_t row, std::vector<int64_t>& order) {
      const T* keys = in + row * row_length;
      std::iota(order.begin(), order.end(), 0);
      // A total order (ties broken by index) makes the partial sort deterministic.
      auto better = [keys, largest](int64_t a, int64_t b) {
        V ka = load<T>(keys + a), kb = load<T>(keys + b);
        if (largest ? less_nan_last<V>(kb, ka) : less_nan_last<V>(ka, kb)) return true;
        if (largest ? less_nan_last<V>(ka, kb) : less_nan_last<V>(kb, ka)) return false;
        return a < b;
      };
      std::partial_sort(order.begin(), order.begin() + k, order.end(), better);
      for (int64_t i = 0; i < k; ++i) {
        std::memcpy(out + row * k + i, keys + order[i], sizeof(T));
        out_index[row * k + i] = order[i];
      }
    });
  });
}

}  // namespace sy::kernels::cpu
