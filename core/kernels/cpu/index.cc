// Gather / scatter-add along a dim, prefix sums, counting.
//   gather:      out[p] = x[p | p[dim] := index[p]]
//   scatter_add: out[p | p[dim] := index[p]] += alpha * source[p]
//   cumsum:      out[o, i, j] = sum_{t <= i} x[o, t, j]  (reverse: sum_{t >= i})
// gather and scatter_add are each other's adjoint: the op's backward of one calls the other.
// index_select / index_add are the same kernels with a 1-D index broadcast along dim.
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
  dispatch_all(out.dtype(), [&]<typename T>() {
    using V = compute_t<T>;
    if constexpr (std::is_same_v<T, bool>) {
      SY_FAIL("scatter_add on a bool tensor");
    } else {
      const int64_t step = out.stride(dim) * static_cast<int64_t>(sizeof(T));
      const V scale = static_cast<V>(alpha);
      serial_positions<3>(source.shape(), {byte_pointer(target), byte_pointer(source), byte_pointer(index)},
                          {target.strides(), source.strides(), index.strides()},
                          {sizeof(T), sizeof(T), sizeof(int64_t)}, [step, scale](std::array<char*, 3> p) {
                            char* slot = p[0] + *reinterpret_cast<const int64_t*>(p[2]) * step;
                            V value = load<T>(p[1]);
                            store<T>(slot, load<T>(slot) + (scale == V(1) ? value : scale * value));
                          });
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
