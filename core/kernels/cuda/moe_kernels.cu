// Routing and token-permutation kernels of the MoE layer:
//   topk:         per row of x (R, L), the k <= 16 best (value, index), best first; equal
//                 values keep the lower index first and NaN ranks as the largest (the CPU's order)
//   index_select: out[o, m, i] = x[o, index[m], i]          (index -1: a zero row, for padding)
//   index_add:    out[o, index[m], i] += alpha * source[o, m, i]   (index -1 is skipped)
// Gradient contract (applied by the ops): index_select and index_add are each other's adjoint;
// topk's value gradient goes back through its indices. index_add uses atomics, so the order of
// the additions into one row (and the last f32 bit) may differ from run to run.
#include "core/kernels/cuda/cuda_kernels.h"
#include "core/kernels/cuda/loops.cuh"
#include "core/kernels/cuda/device_util.cuh"

namespace sy::kernels::cuda {
namespace {

constexpr int kTopkThreads = 128;

__device__ __forceinline__ void zero_element(void* to, int64_t to_index, int size) {
  switch (size) {
    case 1: static_cast<uint8_t*>(to)[to_index] = 0; return;
    case 2: static_cast<uint16_t*>(to)[to_index] = 0; return;
    case 4: static_cast<uint32_t*>(to)[to_index] = 0; return;
    default: static_cast<uint64_t*>(to)[to_index] = 0; return;
  }
}

// a ranks strictly before b, NaN counting as the largest value.
__device__ __forceinline__ bool ranks_before(double a, double b, bool largest) {
  const bool a_nan = isnan(a), b_nan = isnan(b);
  if (largest) return a_nan ? !b_nan : (!b_nan && a > b);
  return b_nan ? !a_nan : (!a_nan && a < b);
}

// One thread per row keeps a sorted list of the best k seen. Scanning in index order and
// inserting only past equal values leaves ties lower-index-first. Keys are compared in f64:
// exact for every dtype but i64 beyond 2^53.
__global__ void topk_rows_kernel(const void* x, void* values, int64_t* indices, DType dtype, int size, int64_t rows,
                                 int64_t length, int k, bool largest) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (row >= rows) return;
  double best[kMaxTopk];
  int64_t best_index[kMaxTopk];
  int count = 0;
  const int64_t start = row * length;
  for (int64_t j = 0; j < length; ++j) {
    const double value = load_as<double>(x, start + j, dtype);
    if (count == k && !ranks_before(value, best[k - 1], largest)) continue;
    int slot = count < k ? count++ : k - 1;
    for (; slot > 0 && ranks_before(value, best[slot - 1], largest); --slot) {
      best[slot] = best[slot - 1];
      best_index[slot] = best_index[slot - 1];
    }
    best[slot] = value;
    best_index[slot] = j;
  }
  for (int i = 0; i < k; ++i) {
    move_element(x, start + best_index[i], values, row * k + i, size);
    indices[row * k + i] = best_index[i];
  }
}

__global__ void index_select_rows_kernel(const void* x, const int64_t* index, void* out, int size, int64_t rows,
                                         int64_t picked, int64_t inner, int64_t total) {
  for (int64_t linear = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; linear < total;
       linear += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = linear % inner, m = (linear / inner) % picked, o = linear / (inner * picked);
    const int64_t row = index[m];
    if (row < 0) {
      zero_element(out, linear, size);
    } else {
      move_element(x, (o * rows + row) * inner + i, out, linear, size);
    }
  }
}

// accumulator (outer, rows, inner) in A (f32, or f64 for f64 tensors).
template <typename A>
__global__ void index_add_rows_kernel(A* accumulator, const int64_t* index, const void* source, DType dtype,
                                      A alpha, int64_t rows, int64_t picked, int64_t inner, int64_t total) {
  for (int64_t linear = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; linear < total;
       linear += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = linear % inner, m = (linear / inner) % picked, o = linear / (inner * picked);
    const int64_t row = index[m];
    if (row >= 0) atomicAdd(accumulator + (o * rows + row) * inner + i, alpha * load_as<A>(source, linear, dtype));
  }
}

void check_rows(const char* op, const Tensor& x, const Tensor& index, const Tensor& picked_rows) {
  SY_CHECK(x.dim() == 3 && picked_rows.dim() == 3 && index.dim() == 1 && x.size(0) == picked_rows.size(0) &&
               x.size(2) == picked_rows.size(2) && picked_rows.size(1) == index.size(0),
           op, ": x ", ShapeString(x.shape()), ", index ", ShapeString(index.shape()), ", rows ",
           ShapeString(picked_rows.shape()), " (expected (outer, S, inner), (M), (outer, M, inner))");
  SY_CHECK(x.is_contiguous() && picked_rows.is_contiguous() && index.is_contiguous() &&
               index.dtype() == DType::kI64 && x.dtype() == picked_rows.dtype(),
           op, ": expected contiguous tensors of one dtype and a contiguous i64 index");
  SY_CHECK(x.device().is_cuda() && x.device() == index.device() && x.device() == picked_rows.device(), op,
           ": x on ", x.device().to_string(), ", index on ", index.device().to_string(), ", rows on ",
           picked_rows.device().to_string());
}

}  // namespace

void topk_rows(const Tensor& x, int64_t row_length, int64_t k, bool largest, Tensor& values, Tensor& indices) {
  SY_CHECK(k >= 0 && k <= kMaxTopk && k <= row_length, "cuda topk: k = ", k, " for rows of ", row_length,
           " (at most ", kMaxTopk, ")");
  SY_CHECK(x.is_contiguous() && values.is_contiguous() && indices.is_contiguous() && values.dtype() == x.dtype() &&
               indices.dtype() == DType::kI64,
           "cuda topk: expected contiguous x, values in x's dtype and i64 indices");
  const int device = device_of(x, "cuda topk");
  SY_CHECK(values.device() == x.device() && indices.device() == x.device(), "cuda topk: outputs on ",
           values.device().to_string(), " and ", indices.device().to_string(), " for x on ", x.device().to_string());
  const int64_t rows = row_length == 0 ? 0 : x.numel() / row_length;
  SY_CHECK(values.numel() == rows * k && indices.numel() == rows * k, "cuda topk: values ",
           ShapeString(values.shape()), " and indices ", ShapeString(indices.shape()), " for ", rows, " rows, k = ",
           k);
  if (rows == 0 || k == 0) return;
  sy::cuda::DeviceGuard guard(device);
  const int64_t blocks = (rows + kTopkThreads - 1) / kTopkThreads;
  SY_CHECK(blocks <= INT32_MAX, "cuda topk: ", rows, " rows exceed the grid");
  topk_rows_kernel<<<static_cast<unsigned>(blocks), kTopkThreads, 0, sy::cuda::current_stream(device)>>>(
      x.data_ptr(), values.data_ptr(), indices.data<int64_t>(), x.dtype(), static_cast<int>(element_size(x.dtype())),
      rows, row_length, static_cast<int>(k), largest);
  SY_CUDA_CHECK_LAUNCH();
}

void index_select_rows(const Tensor& x, const Tensor& index, Tensor& out) {
  check_rows("cuda index_select", x, index, out);
  const int device = out.device().index;
  if (out.numel() == 0) return;
  sy::cuda::DeviceGuard guard(device);
  index_select_rows_kernel<<<grid_for(out.numel()), kThreads, 0, sy::cuda::current_stream(device)>>>(
      x.data_ptr(), index.data<int64_t>(), out.data_ptr(), static_cast<int>(element_size(x.dtype())), x.size(1),
      out.size(1), out.size(2), out.numel());
  SY_CUDA_CHECK_LAUNCH();
}

void index_add_rows(Tensor& out, const Tensor& index, const Tensor& source, double alpha) {
  check_rows("cuda index_add", out, index, source);
  SY_CHECK(is_floating(out.dtype()), "cuda index_add: floating tensors only, got ", dtype_name(out.dtype()));
  const int device = out.device().index;
  if (source.numel() == 0) return;
  sy::cuda::DeviceGuard guard(device);
  cudaStream_t stream = sy::cuda::current_stream(device);
  const int64_t rows = out.size(1), picked = source.size(1), inner = source.size(2), total = source.numel();
  if (out.dtype() == DType::kF64) {
    index_add_rows_kernel<double><<<grid_for(total), kThreads, 0, stream>>>(
        out.data<double>(), index.data<int64_t>(), source.data_ptr(), source.dtype(), alpha, rows, picked, inner,
        total);
    SY_CUDA_CHECK_LAUNCH();
    return;
  }
  // bf16/f16 have no fast atomics of their own and would round at every addition: sum in f32.
  Tensor accumulator = out;
  if (out.dtype() != DType::kF32) {
    accumulator = Tensor::empty(out.shape(), DType::kF32, out.device());
    copy(out, accumulator);
  }
  index_add_rows_kernel<float><<<grid_for(total), kThreads, 0, stream>>>(
      accumulator.data<float>(), index.data<int64_t>(), source.data_ptr(), source.dtype(), static_cast<float>(alpha),
      rows, picked, inner, total);
  SY_CUDA_CHECK_LAUNCH();
  if (out.dtype() != DType::kF32) copy(accumulator, out);
}

}  // namespace sy::kernels::cuda
