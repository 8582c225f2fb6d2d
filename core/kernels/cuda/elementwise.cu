// Elementwise kernels, the same functions as the CPU's (core/kernels/cpu/elementwise.cc):
//   unary:  out[i] = f(x[i]; alpha, beta)   neg exp log sqrt rsqrt abs silu gelu(erf) sigmoid
//           tanh relu pow(x, alpha) clamp(x, alpha, beta) sign reciprocal
//   binary: out[i] = f(a[i], b[i])          + - * / pow maximum minimum, and the comparisons
//           == != < <= > >= writing bool; a and b are broadcast to out's shape (stride 0).
// Computed in V: float for f32/bf16/f16, double for f64, int64 for integers. Gradients are
// composed by the ops from these same kernels.
#include "core/kernels/cuda/cuda_kernels.h"
#include "core/kernels/cuda/loops.cuh"

namespace sy::kernels::cuda {
namespace {

// a^b for integers, exact (the CPU's correctly rounded std::pow truncates to the same); a
// negative exponent leaves 0 unless |a| = 1.
__device__ __forceinline__ int64_t integer_power(int64_t a, int64_t b) {
  if (b < 0) return a == 1 ? 1 : (a == -1 ? (b % 2 == 0 ? 1 : -1) : 0);
  int64_t result = 1;
  for (; b > 0; b /= 2, a *= a) {
    if (b % 2 == 1) result *= a;
  }
  return result;
}

template <typename V>
__device__ __forceinline__ V apply_unary(UnaryOp op, V x, V alpha, V beta) {
  if constexpr (std::is_integral_v<V>) {
    switch (op) {
      case UnaryOp::kNeg: return -x;
      case UnaryOp::kAbs: return x < 0 ? -x : x;
      case UnaryOp::kRelu: return x > 0 ? x : V(0);
      case UnaryOp::kClamp: return x < alpha ? alpha : (x > beta ? beta : x);
      case UnaryOp::kSign: return V((x > 0) - (x < 0));
      case UnaryOp::kReciprocal: return V(1) / x;
      case UnaryOp::kPowScalar: return static_cast<V>(integer_power(x, alpha));
      default:  // the transcendental ones: through double, truncated as on the CPU
        return static_cast<V>(apply_unary<double>(op, static_cast<double>(x), static_cast<double>(alpha),
                                                  static_cast<double>(beta)));
    }
  } else {
    switch (op) {
      case UnaryOp::kNeg: return -x;
      case UnaryOp::kExp: return exp(x);
      case UnaryOp::kLog: return log(x);
      case UnaryOp::kSqrt: return sqrt(x);
      case UnaryOp::kRsqrt: return V(1) / sqrt(x);
      case UnaryOp::kAbs: return fabs(x);
      case UnaryOp::kSilu: return x / (V(1) + exp(-x));
      case UnaryOp::kGelu: return V(0.5) * x * (V(1) + erf(x * V(0.70710678118654752440)));
      case UnaryOp::kSigmoid: return V(1) / (V(1) + exp(-x));
      case UnaryOp::kTanh: return tanh(x);
      case UnaryOp::kRelu: return x > V(0) ? x : V(0);
      case UnaryOp::kPowScalar: return pow(x, alpha);
      case UnaryOp::kClamp: return x < alpha ? alpha : (x > beta ? beta : x);
      case UnaryOp::kSign: return V((x > V(0)) - (x < V(0)));
      case UnaryOp::kReciprocal: return V(1) / x;
    }
    return x;
  }
}

template <typename V>
__device__ __forceinline__ V apply_binary(BinaryOp op, V a, V b) {
  switch (op) {
    case BinaryOp::kAdd: return a + b;
    case BinaryOp::kSub: return a - b;
    case BinaryOp::kMul: return a * b;
    case BinaryOp::kDiv: return a / b;
    case BinaryOp::kPow:
      if constexpr (std::is_integral_v<V>) {
        return static_cast<V>(integer_power(a, b));
      } else {
        return pow(a, b);
      }
    case BinaryOp::kMaximum: return a > b ? a : b;
    case BinaryOp::kMinimum: return a < b ? a : b;
    case BinaryOp::kEq: return V(a == b);
    case BinaryOp::kNe: return V(a != b);
    case BinaryOp::kLt: return V(a < b);
    case BinaryOp::kLe: return V(a <= b);
    case BinaryOp::kGt: return V(a > b);
    case BinaryOp::kGe: return V(a >= b);
  }
  return V(0);
}

template <typename V>
__global__ void unary_kernel(UnaryOp op, void* out, const void* x, DType dtype, V alpha, V beta, int64_t n,
                             StridedOffsets<2> offsets) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    int64_t o[2];
    offsets.offsets(i, o);
    store_as<V>(out, o[0], dtype, apply_unary<V>(op, load_as<V>(x, o[1], dtype), alpha, beta));
  }
}

// Comparisons produce 0/1 in V and store into the bool out.
template <typename V>
__global__ void binary_kernel(BinaryOp op, void* out, DType out_dtype, const void* a, const void* b, DType dtype,
                              int64_t n, StridedOffsets<3> offsets) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    int64_t o[3];
    offsets.offsets(i, o);
    store_as<V>(out, o[0], out_dtype, apply_binary<V>(op, load_as<V>(a, o[1], dtype), load_as<V>(b, o[2], dtype)));
  }
}

// Calls f.template operator()<V>() with the compute type of `dtype`.
template <typename F>
void dispatch_compute(DType dtype, const char* op, F&& f) {
  switch (dtype) {
    case DType::kF64: f.template operator()<double>(); return;
    case DType::kF32:
    case DType::kBF16:
    case DType::kF16: f.template operator()<float>(); return;
    case DType::kI32:
    case DType::kI64: f.template operator()<int64_t>(); return;
    case DType::kBool: break;
  }
  SY_FAIL(op, ": not supported for ", dtype_name(dtype), " tensors");
}

}  // namespace

void unary(UnaryOp op, const Tensor& x, Tensor& out, double alpha, double beta) {
  SY_CHECK(x.shape() == out.shape() && x.dtype() == out.dtype(), "cuda unary: x ", ShapeString(x.shape()), " ",
           dtype_name(x.dtype()), " out ", ShapeString(out.shape()), " ", dtype_name(out.dtype()));
  const int device = device_of(out, "cuda unary");
  SY_CHECK(x.device() == out.device(), "cuda unary: x on ", x.device().to_string(), ", out on ",
           out.device().to_string());
  const int64_t n = out.numel();
  if (n == 0) return;
  sy::cuda::DeviceGuard guard(device);
  StridedOffsets<2> offsets = make_strided_offsets<2>(out.shape(), {&out.strides(), &x.strides()});
  cudaStream_t stream = sy::cuda::current_stream(device);
  dispatch_compute(x.dtype(), "cuda unary", [&]<typename V>() {
    unary_kernel<V><<<grid_for(n), kThreads, 0, stream>>>(op, out.data_ptr(), x.data_ptr(), x.dtype(),
                                                          static_cast<V>(alpha), static_cast<V>(beta), n, offsets);
  });
  SY_CUDA_CHECK_LAUNCH();
}

void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) {
  SY_CHECK(a.shape() == out.shape() && b.shape() == out.shape() && a.dtype() == b.dtype(), "cuda binary: a ",
           ShapeString(a.shape()), " b ", ShapeString(b.shape()), " out ", ShapeString(out.shape()));
  const bool comparison = op >= BinaryOp::kEq;
  SY_CHECK(out.dtype() == (comparison ? DType::kBool : a.dtype()), "cuda binary: out dtype ",
           dtype_name(out.dtype()), " for inputs of ", dtype_name(a.dtype()));
  const int device = device_of(out, "cuda binary");
  SY_CHECK(a.device() == out.device() && b.device() == out.device(), "cuda binary: a on ", a.device().to_string(),
           ", b on ", b.device().to_string(), ", out on ", out.device().to_string());
  const int64_t n = out.numel();
  if (n == 0) return;
  sy::cuda::DeviceGuard guard(device);
  StridedOffsets<3> offsets =
      make_strided_offsets<3>(out.shape(), {&out.strides(), &a.strides(), &b.strides()});
  cudaStream_t stream = sy::cuda::current_stream(device);
  const DType dtype = a.dtype();
  auto launch = [&]<typename V>() {
    binary_kernel<V><<<grid_for(n), kThreads, 0, stream>>>(op, out.data_ptr(), out.dtype(), a.data_ptr(),
                                                           b.data_ptr(), dtype, n, offsets);
  };
  if (dtype == DType::kBool) {
    SY_CHECK(comparison, "cuda binary: arithmetic on bool tensors");  // as on the CPU
    launch.template operator()<int64_t>();
  } else {
    dispatch_compute(dtype, "cuda binary", launch);
  }
  SY_CUDA_CHECK_LAUNCH();
}

}  // namespace sy::kernels::cuda
