// Gather / scatter-add along a dim, prefix sums, counting.
//   gather:      out[p] = x[p | p[dim] := index[p]]
//   scatter_add: out[p | p[dim] := index[p]] += alpha * source[p]
//   cumsum:      out[o, i, j] = sum_{t <= i} x[o, t, j]  (reverse: sum_{t >= i})
// gather and scatter_add are each other's adjoint: the op's backward of one calls the other.
// index_select / index_add are the same kernels with a 1-D index broadcast along dim.
#include <algorithm>
#include <cstring>
#include <vector>

#include "core/kernels/cpu/index_kernels.h"
#include "core/kernels/cpu/loops.h"

namespace sy::kernels::cpu {
namespace {

// `tensor` seen with `shape` (its own strides, stride 0 along dim): a position p of it
// points at tensor[p | p[dim] := 0], to which the kernel adds index * stride(dim).
Tensor view_at_index_zero(const Tensor& tensor, const Shape& shape, int64_t dim) {
  Shape strides = tensor.strides();
  strides[dim] = 0;
  return Tensor::from_storage(tensor.storage(), shape, strides, tensor.offset(), tensor.dtype());
}

// Visits every position of `shape` in row-major order on one core, with byte pointers.
template <size_t N, typename F>
void serial_positions(const Shape& shape, std::array<char*, N> pointers,
                      const std::array<Shape, N>& element_strides, std::array<size_t, N> element_sizes,
                      F&& f) {
  const int64_t total = shape_numel(shape);
  const int64_t dims = static_cast<int64_t>(shape.size());
  std::vector<int64_t> position(dims, 0);
  for (int64_t n = 0; n < total; ++n) {
    f(pointers);
    for (int64_t d = dims - 1; d >= 0; --d) {
      for (size_t k = 0; k < N; ++k) pointers[k] += element_strides[k][d] * element_sizes[k];
      if (++position[d] < shape[d]) break;
      for (size_t k = 0; k < N; ++k) pointers[k] -= element_strides[k][d] * shape[d] * element_sizes[k];
      position[d] = 0;
    }
  }
}

// scatter_add over the positions of `shape` (row-major) from byte pointers to the target
// (seen at index 0 along dim), source and index, with element strides. Runs along the
// innermost dim; when the index is constant along a run (index_add's broadcast index off
// dim) it is read once and the run is a plain strided axpy.
template <typename T>
void scatter_block(const Shape& shape, std::array<char*, 3> pointers, const std::array<Shape, 3>& strides,
                   int64_t step, compute_t<T> scale) {
  using V = compute_t<T>;
  if (shape.empty()) {
    char* slot = pointers[0] + *reinterpret_cast<const int64_t*>(pointers[2]) * step;
    store<T>(slot, load<T>(slot) + scale * load<T>(pointers[1]));
    return;
  }
  const size_t last = shape.size() - 1;
  const int64_t n = shape[last];
  const int64_t target_stride = strides[0][last], source_stride = strides[1][last], index_stride = strides[2][last];
  Shape outer(shape.begin(), shape.end() - 1);
  std::array<Shape, 3> outer_strides;
  for (size_t k = 0; k < 3; ++k) outer_strides[k] = Shape(strides[k].begin(), strides[k].end() - 1);
  serial_positions<3>(outer, pointers, outer_strides, {sizeof(T), sizeof(T), sizeof(int64_t)},
                      [&](std::array<char*, 3> p) {
                        const T* source = reinterpret_cast<const T*>(p[1]);
                        const int64_t* index = reinterpret_cast<const int64_t*>(p[2]);
                        if (index_stride == 0) {
                          T* row = reinterpret_cast<T*>(p[0] + *index * step);
                          for (int64_t i = 0; i < n; ++i) {
                            T* slot = row + i * target_stride;
                            V value = load<T>(source + i * source_stride);
                            store<T>(slot, load<T>(slot) + (scale == V(1) ? value : scale * value));
                          }
                          return;
                        }
                        for (int64_t i = 0; i < n; ++i) {
                          T* slot = reinterpret_cast<T*>(p[0] + index[i * index_stride] * step) + i * target_stride;
                          V value = load<T>(source + i * source_stride);
                          store<T>(slot, load<T>(slot) + (scale == V(1) ? value : scale * value));
                        }
                      });
}

}  // namespace

void gather(const Tensor& x, int64_t dim, const Tensor& index, Tensor& out) {
  SY_CHECK(index.dtype() == DType::kI64 && index.shape() == out.shape() && x.dtype() == out.dtype(),
           "gather: index ", ShapeString(index.shape()), " out ", ShapeString(out.shape()));
  Tensor source = view_at_index_zero(x, out.shape(), dim);
  dispatch_all(x.dtype(), [&]<typename T>() {
    const int64_t step = x.stride(dim) * static_cast<int64_t>(sizeof(T));
    strided_loop<3>(out.shape(), {byte_pointer(out), byte_pointer(source), byte_pointer(index)},
                    {out.strides(), source.strides(), index.strides()},
                    {sizeof(T), sizeof(T), sizeof(int64_t)},
                    [step](int64_t n, std::array<char*, 3> p, std::array<int64_t, 3> s) {
                      for (int64_t i = 0; i < n; ++i) {
                        int64_t at = *reinterpret_cast<const int64_t*>(p[2] + i * s[2]);
                        std::memcpy(p[0] + i * s[0], p[1] + i * s[1] + at * step, sizeof(T));
                      }
                    });
  });
}

void scatter_add(Tensor& out, int64_t dim, const Tensor& index, const Tensor& source, double alpha) {
  SY_CHECK(index.dtype() == DType::kI64 && index.shape() == source.shape() &&
               source.dtype() == out.dtype(),
           "scatter_add: index ", ShapeString(index.shape()), " source ", ShapeString(source.shape()));
  Tensor target = view_at_index_zero(out, source.shape(), dim);
  const Shape& shape = source.shape();
  // Positions that differ off `dim` never share a target element, so the cores split the
  // longest other dim: each adds its slice in the serial order, race-free and bitwise equal
  // to one core. Only a 1-D scatter (or tiny work) stays on one core.
  int64_t split = -1;
  for (int64_t d = 0; d < static_cast<int64_t>(shape.size()); ++d) {
    if (d != dim && (split < 0 || shape[d] > shape[split])) split = d;
  }
  const int64_t total = shape_numel(shape);
  int64_t threads = 1;
  if (split >= 0 && total >= 2 * kParallelGrain && !omp_in_parallel()) {
    threads = std::min({static_cast<int64_t>(omp_get_max_threads()), total / kParallelGrain, shape[split]});
  }
  dispatch_all(out.dtype(), [&]<typename T>() {
    if constexpr (std::is_same_v<T, bool>) {
      SY_FAIL("scatter_add on a bool tensor");
    } else {
      const std::array<Shape, 3> strides = {target.strides(), source.strides(), index.strides()};
      const std::array<char*, 3> base = {byte_pointer(target), byte_pointer(source), byte_pointer(index)};
      const int64_t step = out.stride(dim) * static_cast<int64_t>(sizeof(T));
      const compute_t<T> scale = static_cast<compute_t<T>>(alpha);
      if (threads <= 1) {
        scatter_block<T>(shape, base, strides, step, scale);
        return;
      }
#pragma omp parallel for num_threads(threads) schedule(static)
      for (int64_t t = 0; t < threads; ++t) {
        const int64_t begin = shape[split] * t / threads, end = shape[split] * (t + 1) / threads;
        Shape block = shape;
        block[split] = end - begin;
        std::array<char*, 3> pointers = base;
        pointers[0] += begin * strides[0][split] * static_cast<int64_t>(sizeof(T));
        pointers[1] += begin * strides[1][split] * static_cast<int64_t>(sizeof(T));
        pointers[2] += begin * strides[2][split] * static_cast<int64_t>(sizeof(int64_t));
        scatter_block<T>(block, pointers, strides, step, scale);
      }
    }
  });
}

void cumsum(const Tensor& x, int64_t outer, int64_t n, int64_t inner, bool reverse, Tensor& out) {
  dispatch_all(x.dtype(), [&]<typename T>() {
    using V = compute_t<T>;
    constexpr bool kFloating = std::is_floating_point_v<V>;
    using Accumulator = std::conditional_t<kFloating, double, int64_t>;
    using Out = std::conditional_t<kFloating, T, int64_t>;
    SY_CHECK(out.dtype() == (kFloating ? x.dtype() : DType::kI64), "cumsum: out dtype ",
             dtype_name(out.dtype()));
    const T* in = x.data<T>();
    Out* result = out.data<Out>();
    const bool parallel = outer > 1 && outer * n * inner >= 2 * kParallelGrain && !omp_in_parallel();
#pragma omp parallel if (parallel)
    {
      std::vector<Accumulator> running(inner);
#pragma omp for schedule(static)
      for (int64_t o = 0; o < outer; ++o) {
        std::fill(running.begin(), running.end(), Accumulator(0));
        for (int64_t step = 0; step < n; ++step) {
          int64_t i = reverse ? n - 1 - step : step;
          const int64_t base = (o * n + i) * inner;
          for (int64_t j = 0; j < inner; ++j) {
            running[j] += static_cast<Accumulator>(load<T>(in + base + j));
            store<Out>(result + base + j, running[j]);
          }
        }
      }
    }
  });
}

void bincount(const Tensor& x, Tensor& out) {
  const int64_t* values = x.data<int64_t>();
  int64_t* counts = out.data<int64_t>();
  std::fill(counts, counts + out.numel(), int64_t{0});
  for (int64_t i = 0; i < x.numel(); ++i) ++counts[values[i]];
}

void one_hot(const Tensor& x, Tensor& out) {
  const int64_t* values = x.data<int64_t>();
  int64_t* result = out.data<int64_t>();
  const int64_t classes = x.numel() == 0 ? 0 : out.numel() / x.numel();
  std::fill(result, result + out.numel(), int64_t{0});
  for (int64_t i = 0; i < x.numel(); ++i) result[i * classes + values[i]] = 1;
}

}  // namespace sy::kernels::cpu
