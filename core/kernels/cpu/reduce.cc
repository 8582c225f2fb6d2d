// Row reductions over contiguous data: sum (accumulated in f64), max, min, argmax.
#include <limits>

#include "core/kernels/cpu/cpu_kernels.h"
#include "core/kernels/cpu/loops.h"

namespace sy::kernels::cpu {

void reduce_rows(ReduceOp op, const Tensor& x, int64_t row_length, Tensor& out) {
  SY_CHECK(x.is_contiguous() && out.is_contiguous(), "reduce_rows needs contiguous tensors");
  const int64_t rows = out.numel();
  SY_CHECK(rows * row_length == x.numel(), "reduce_rows: ", rows, " rows of ", row_length,
           " for ", x.numel(), " elements");
  dispatch_all(x.dtype(), [&]<typename T>() {
    using V = compute_t<T>;
    const char* in = static_cast<const char*>(x.data_ptr());
    char* result = static_cast<char*>(out.data_ptr());
    SY_CHECK(out.dtype() == x.dtype(), "reduce_rows: out dtype");
    auto reduce_one = [&](int64_t r) {
      const char* row = in + r * row_length * sizeof(T);
      if (op == ReduceOp::kSum) {
        if constexpr (std::is_same_v<T, float>) {
          // Four f64 partial sums keep f32 sums accurate and still vectorize.
          const float* values = reinterpret_cast<const float*>(row);
          double partial[4] = {0, 0, 0, 0};
          int64_t i = 0;
          for (; i + 4 <= row_length; i += 4) {
            for (int k = 0; k < 4; ++k) partial[k] += values[i + k];
          }
          double total = partial[0] + partial[1] + partial[2] + partial[3];
          for (; i < row_length; ++i) total += values[i];
          store<T>(result + r * sizeof(T), total);
        } else {
          double total = 0;
          for (int64_t i = 0; i < row_length; ++i) total += static_cast<double>(load<T>(row + i * sizeof(T)));
          store<T>(result + r * sizeof(T), total);
        }
      } else {
        SY_CHECK(row_length > 0, "max/min of an empty row");
        V best = load<T>(row);
        for (int64_t i = 1; i < row_length; ++i) {
          V v = load<T>(row + i * sizeof(T));
          if (op == ReduceOp::kMax ? (v > best || v != v) : (v < best || v != v)) best = v;
        }
        store<T>(result + r * sizeof(T), best);
      }
    };
    if (x.numel() >= 2 * kParallelGrain && rows > 1) {
#pragma omp parallel for schedule(static)
      for (int64_t r = 0; r < rows; ++r) reduce_one(r);
    } else {
      for (int64_t r = 0; r < rows; ++r) reduce_one(r);
    }
  });
}

void argmax_rows(const Tensor& x, int64_t row_length, Tensor& out) {
  SY_CHECK(x.is_contiguous() && out.is_contiguous() && out.dtype() == DType::kI64,
           "argmax_rows needs contiguous x and i64 out");
  SY_CHECK(row_length > 0, "argmax of an empty row");
  const int64_t rows = out.numel();
  dispatch_all(x.dtype(), [&]<typename T>() {
    using V = compute_t<T>;
    const char* in = static_cast<const char*>(x.data_ptr());
    int64_t* result = out.data<int64_t>();
#pragma omp parallel for schedule(static) if (x.numel() >= 2 * kParallelGrain)
    for (int64_t r = 0; r < rows; ++r) {
      const char* row = in + r * row_length * sizeof(T);
      V best = load<T>(row);
      int64_t best_index = 0;
      for (int64_t i = 1; i < row_length; ++i) {
        V v = load<T>(row + i * sizeof(T));
        if (v > best) {
          best = v;
          best_index = i;
        }
      }
      result[r] = best_index;
    }
  });
}

}  // namespace sy::kernels::cpu
