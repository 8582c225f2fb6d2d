// Shared machinery of the CPU kernels: dtype dispatch, element load/store with bf16/f16
// computed in f32, and a strided N-d loop that coalesces dimensions and hands runs along
// the innermost one to a kernel, split over the cores when the work is large enough.
#pragma once

#include <omp.h>

#include <array>
#include <cstdint>
#include <type_traits>

#include "core/check.h"
#include "core/dtype.h"
#include "core/tensor.h"

namespace sy::kernels::cpu {

// Elements per thread below which a loop stays on one core.
constexpr int64_t kParallelGrain = 32768;

// Calls f.template operator()<T>() with the C++ type stored for `dtype`.
template <typename F>
void dispatch_all(DType dtype, F&& f) {
  switch (dtype) {
    case DType::kF64: f.template operator()<double>(); return;
    case DType::kF32: f.template operator()<float>(); return;
    case DType::kBF16: f.template operator()<BFloat16>(); return;
    case DType::kF16: f.template operator()<Half>(); return;
    case DType::kI32: f.template operator()<int32_t>(); return;
    case DType::kI64: f.template operator()<int64_t>(); return;
    case DType::kBool: f.template operator()<bool>(); return;
  }
  SY_FAIL("unknown dtype");
}

template <typename F>
void dispatch_floating(DType dtype, const char* op, F&& f) {
  switch (dtype) {
    case DType::kF64: f.template operator()<double>(); return;
    case DType::kF32: f.template operator()<float>(); return;
    case DType::kBF16: f.template operator()<BFloat16>(); return;
    case DType::kF16: f.template operator()<Half>(); return;
    default: SY_FAIL(op, ": expected a floating-point tensor, got ", dtype_name(dtype));
  }
}

// The type a stored element is computed in.
template <typename T>
struct ComputeType { using type = T; };
template <>
struct ComputeType<BFloat16> { using type = float; };
template <>
struct ComputeType<Half> { using type = float; };
template <typename T>
using compute_t = typename ComputeType<T>::type;

template <typename T>
inline compute_t<T> load(const void* pointer) {
  if constexpr (std::is_same_v<T, BFloat16>) {
    return bf16_to_float(static_cast<const BFloat16*>(pointer)->bits);
  } else if constexpr (std::is_same_v<T, Half>) {
    return half_to_float(static_cast<const Half*>(pointer)->bits);
  } else {
    return *static_cast<const T*>(pointer);
  }
}

template <typename T, typename V>
inline void store(void* pointer, V value) {
  if constexpr (std::is_same_v<T, BFloat16>) {
    static_cast<BFloat16*>(pointer)->bits = float_to_bf16(static_cast<float>(value));
  } else if constexpr (std::is_same_v<T, Half>) {
    static_cast<Half*>(pointer)->bits = float_to_half(static_cast<float>(value));
  } else if constexpr (std::is_same_v<T, bool>) {
    *static_cast<bool*>(pointer) = value != V(0);
  } else {
    *static_cast<T*>(pointer) = static_cast<T>(value);
  }
}

// Runs inner(count, pointers, strides) over every run along the innermost (coalesced)
// dimension of `shape`; pointers and strides are in bytes, one per operand. All operands
// have `shape` (broadcast operands carry stride 0).
template <size_t N, typename Inner>
void strided_loop(const Shape& shape, std::array<char*, N> base,
                  std::array<Shape, N> element_strides, std::array<size_t, N> element_sizes,
                  Inner&& inner) {
  // Coalesce: merge dim d into d-1 when every operand steps through them as one.
  Shape sizes;
  std::array<Shape, N> strides;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    bool merge = !sizes.empty();
    for (size_t k = 0; k < N && merge; ++k) {
      merge = strides[k].back() == element_strides[k][d] * shape[d];
    }
    if (merge) {
      sizes.back() *= shape[d];
      for (size_t k = 0; k < N; ++k) strides[k].back() = element_strides[k][d];
    } else {
      sizes.push_back(shape[d]);
      for (size_t k = 0; k < N; ++k) strides[k].push_back(element_strides[k][d]);
    }
  }
  if (sizes.empty()) {
    sizes.push_back(1);
    for (size_t k = 0; k < N; ++k) strides[k].push_back(0);
  }
  const int64_t dims = static_cast<int64_t>(sizes.size());
  const int64_t inner_size = sizes.back();
  std::array<int64_t, N> inner_strides;
  for (size_t k = 0; k < N; ++k) inner_strides[k] = strides[k].back() * element_sizes[k];
  int64_t outer = 1;
  for (int64_t d = 0; d + 1 < dims; ++d) outer *= sizes[d];
  for (int64_t s : shape) {
    if (s == 0) return;
  }

  auto run = [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o) {
      std::array<char*, N> pointers = base;
      int64_t rest = o;
      for (int64_t d = dims - 2; d >= 0; --d) {
        int64_t index = rest % sizes[d];
        rest /= sizes[d];
        for (size_t k = 0; k < N; ++k) pointers[k] += index * strides[k][d] * element_sizes[k];
      }
      inner(inner_size, pointers, inner_strides);
    }
  };
  const int64_t total = outer * inner_size;
  if (total < 2 * kParallelGrain || omp_in_parallel()) {
    run(0, outer);
    return;
  }
  if (outer == 1) {
    // One long run: split it.
    const int64_t threads = std::min<int64_t>(omp_get_max_threads(), total / kParallelGrain);
#pragma omp parallel for num_threads(threads)
    for (int64_t t = 0; t < threads; ++t) {
      int64_t begin = inner_size * t / threads, end = inner_size * (t + 1) / threads;
      std::array<char*, N> pointers = base;
      for (size_t k = 0; k < N; ++k) pointers[k] += begin * inner_strides[k];
      inner(end - begin, pointers, inner_strides);
    }
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t o = 0; o < outer; ++o) run(o, o + 1);
}

// Element strides of `tensor` and its byte pointer, for strided_loop.
inline char* byte_pointer(const Tensor& tensor) { return static_cast<char*>(tensor.data_ptr()); }

}  // namespace sy::kernels::cpu
