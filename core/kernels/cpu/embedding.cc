// Embedding lookup and its scatter-add gradient.
//   forward:  out[n, :] = weight[ids[n], :]
//   backward: grad_weight[v, :] = sum over n with ids[n] == v of grad_out[n, :]  (written =)
// The backward splits the C columns over threads: each owns a column range of every row of
// grad_weight and adds the rows of grad_out in order n = 0..N-1, so no two threads touch the
// same element and the sum order (hence the result) does not depend on the thread count.
#include <algorithm>
#include <cstring>

#include "core/kernels/cpu/attention_kernels.h"
#include "core/kernels/cpu/loops.h"

namespace sy::kernels::cpu {
namespace {

// The ids as i64, each checked against [0, V); done serially so the check may throw.
std::vector<int64_t> checked_ids(const Tensor& ids, int64_t V) {
  const int64_t N = ids.numel();
  std::vector<int64_t> out(N);
  for (int64_t n = 0; n < N; ++n) {
    out[n] = ids.dtype() == DType::kI64 ? ids.data<int64_t>()[n] : ids.data<int32_t>()[n];
    SY_CHECK(out[n] >= 0 && out[n] < V, "embedding: id ", out[n], " at position ", n,
             " is outside the vocabulary [0, V = ", V, ")");
  }
  return out;
}

}  // namespace

void embedding_forward(const Tensor& ids, const Tensor& weight, Tensor& out) {
  SY_CHECK(ids.dtype() == DType::kI32 || ids.dtype() == DType::kI64,
           "embedding: ids must be i32 or i64, got ", dtype_name(ids.dtype()));
  const int64_t V = weight.size(0), C = weight.size(1), N = ids.numel();
  SY_CHECK(out.shape() == Shape({N, C}) && out.dtype() == weight.dtype(), "embedding: out ",
           ShapeString(out.shape()), " for ", N, " ids and weight ", ShapeString(weight.shape()));
  std::vector<int64_t> rows = checked_ids(ids, V);
  // Rows are copied as bytes: the lookup does no arithmetic, so any dtype works.
  const size_t row_bytes = static_cast<size_t>(C) * element_size(weight.dtype());
  const char* source = static_cast<const char*>(weight.data_ptr());
  char* destination = static_cast<char*>(out.data_ptr());
#pragma omp parallel for schedule(static) if (N * C >= 2 * kParallelGrain)
  for (int64_t n = 0; n < N; ++n) {
    std::memcpy(destination + n * row_bytes, source + rows[n] * row_bytes, row_bytes);
  }
}

void embedding_backward(const Tensor& ids, const Tensor& grad_out, Tensor& grad_weight) {
  const int64_t V = grad_weight.size(0), C = grad_weight.size(1), N = ids.numel();
  SY_CHECK(grad_out.shape() == Shape({N, C}) && grad_out.dtype() == grad_weight.dtype(),
           "embedding backward: grad_out ", ShapeString(grad_out.shape()), " for grad_weight ",
           ShapeString(grad_weight.shape()), " and ", N, " ids");
  std::vector<int64_t> rows = checked_ids(ids, V);
  auto run = [&]<typename T>() {
    const T* grad = grad_out.data<T>();
    T* accumulated = grad_weight.data<T>();
    std::fill(accumulated, accumulated + V * C, T(0));
    // Column ranges of at least 16 elements (one cache line of f32) per thread.
    const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(omp_get_max_threads(), C / 16));
    const bool parallel = N * C >= 2 * kParallelGrain && chunks > 1;
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t chunk = 0; chunk < chunks; ++chunk) {
      const int64_t begin = C * chunk / chunks, end = C * (chunk + 1) / chunks;
      for (int64_t n = 0; n < N; ++n) {
        const T* source = grad + n * C;
        T* destination = accumulated + rows[n] * C;
        for (int64_t c = begin; c < end; ++c) destination[c] += source[c];
      }
    }
  };
  switch (grad_weight.dtype()) {
    case DType::kF32: run.template operator()<float>(); break;
    case DType::kF64: run.template operator()<double>(); break;
    default: SY_FAIL("embedding backward: accumulates in f32 or f64, got ", dtype_name(grad_weight.dtype()));
  }
}

}  // namespace sy::kernels::cpu
