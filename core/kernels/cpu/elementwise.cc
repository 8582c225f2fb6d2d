// Elementwise kernels: y = f(x), z = f(x, y), where. bf16/f16 compute in f32.
#include <cmath>
#include <cstring>

#include "core/kernels/cpu/cpu_kernels.h"
#include "core/kernels/cpu/loops.h"

namespace sy::kernels::cpu {
namespace {

template <typename V>
V apply_unary(UnaryOp op, V x, V alpha, V beta) {
  switch (op) {
    case UnaryOp::kNeg: return -x;
    case UnaryOp::kExp: return std::exp(x);
    case UnaryOp::kLog: return std::log(x);
    case UnaryOp::kSqrt: return std::sqrt(x);
    case UnaryOp::kRsqrt: return V(1) / std::sqrt(x);
    case UnaryOp::kAbs: return std::abs(x);
    case UnaryOp::kSilu: return x / (V(1) + std::exp(-x));
    case UnaryOp::kGelu: return V(0.5) * x * (V(1) + std::erf(x * V(0.70710678118654752440)));
    case UnaryOp::kSigmoid: return V(1) / (V(1) + std::exp(-x));
    case UnaryOp::kTanh: return std::tanh(x);
    case UnaryOp::kRelu: return x > V(0) ? x : V(0);
    case UnaryOp::kPowScalar: return std::pow(x, alpha);
    case UnaryOp::kClamp: return x < alpha ? alpha : (x > beta ? beta : x);
    case UnaryOp::kSign: return V((x > V(0)) - (x < V(0)));
    case UnaryOp::kReciprocal: return V(1) / x;
  }
  return x;
}

template <typename V>
V apply_binary(BinaryOp op, V a, V b) {
  switch (op) {
    case BinaryOp::kAdd: return a + b;
    case BinaryOp::kSub: return a - b;
    case BinaryOp::kMul: return a * b;
    case BinaryOp::kDiv: return a / b;
    case BinaryOp::kPow: return static_cast<V>(std::pow(a, b));
    case BinaryOp::kMaximum: return a > b ? a : b;
    case BinaryOp::kMinimum: return a < b ? a : b;
    default: return V(0);
  }
}

template <typename V>
bool apply_compare(BinaryOp op, V a, V b) {
  switch (op) {
    case BinaryOp::kEq: return a == b;
    case BinaryOp::kNe: return a != b;
    case BinaryOp::kLt: return a < b;
    case BinaryOp::kLe: return a <= b;
    case BinaryOp::kGt: return a > b;
    case BinaryOp::kGe: return a >= b;
    default: return false;
  }
}

bool is_comparison(BinaryOp op) { return op >= BinaryOp::kEq; }

}  // namespace

void unary(UnaryOp op, const Tensor& x, Tensor& out, double alpha, double beta) {
  SY_CHECK(x.shape() == out.shape() && x.dtype() == out.dtype(), "unary: x ",
           ShapeString(x.shape()), " out ", ShapeString(out.shape()));
  dispatch_all(x.dtype(), [&]<typename T>() {
    using V = compute_t<T>;
    if constexpr (std::is_same_v<T, bool>) {
      SY_FAIL("unary op on a bool tensor");
    } else {
      const V a = static_cast<V>(alpha), b = static_cast<V>(beta);
      strided_loop<2>(out.shape(), {byte_pointer(out), byte_pointer(x)}, {out.strides(), x.strides()},
                      {sizeof(T), sizeof(T)},
                      [op, a, b](int64_t n, std::array<char*, 2> p, std::array<int64_t, 2> s) {
                        for (int64_t i = 0; i < n; ++i) {
                          store<T>(p[0] + i * s[0], apply_unary<V>(op, load<T>(p[1] + i * s[1]), a, b));
                        }
                      });
    }
  });
}

void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) {
  SY_CHECK(a.shape() == out.shape() && b.shape() == out.shape() && a.dtype() == b.dtype(),
           "binary: a ", ShapeString(a.shape()), " b ", ShapeString(b.shape()), " out ",
           ShapeString(out.shape()));
  dispatch_all(a.dtype(), [&]<typename T>() {
    using V = compute_t<T>;
    std::array<char*, 3> pointers = {byte_pointer(out), byte_pointer(a), byte_pointer(b)};
    std::array<Shape, 3> strides = {out.strides(), a.strides(), b.strides()};
    if (is_comparison(op)) {
      SY_CHECK(out.dtype() == DType::kBool, "comparison writes bool");
      strided_loop<3>(out.shape(), pointers, strides, {sizeof(bool), sizeof(T), sizeof(T)},
                      [op](int64_t n, std::array<char*, 3> p, std::array<int64_t, 3> s) {
                        for (int64_t i = 0; i < n; ++i) {
                          *reinterpret_cast<bool*>(p[0] + i * s[0]) =
                              apply_compare<V>(op, load<T>(p[1] + i * s[1]), load<T>(p[2] + i * s[2]));
                        }
                      });
      return;
    }
    SY_CHECK(out.dtype() == a.dtype(), "binary: out dtype ", dtype_name(out.dtype()));
    if constexpr (std::is_same_v<T, bool>) {
      SY_FAIL("arithmetic on bool tensors");
    } else {
      strided_loop<3>(out.shape(), pointers, strides, {sizeof(T), sizeof(T), sizeof(T)},
                      [op](int64_t n, std::array<char*, 3> p, std::array<int64_t, 3> s) {
                        if constexpr (std::is_same_v<T, V>) {
                          if (s[0] == sizeof(T) && s[1] == sizeof(T) && s[2] == sizeof(T)) {
                            // Contiguous fast paths the compiler vectorizes.
                            auto* o = reinterpret_cast<T*>(p[0]);
                            auto* x = reinterpret_cast<const T*>(p[1]);
                            auto* y = reinterpret_cast<const T*>(p[2]);
                            if (op == BinaryOp::kAdd) {
                              for (int64_t i = 0; i < n; ++i) o[i] = x[i] + y[i];
                              return;
                            }
                            if (op == BinaryOp::kMul) {
                              for (int64_t i = 0; i < n; ++i) o[i] = x[i] * y[i];
                              return;
                            }
                          }
                        }
                        for (int64_t i = 0; i < n; ++i) {
                          store<T>(p[0] + i * s[0],
                                   apply_binary<V>(op, load<T>(p[1] + i * s[1]), load<T>(p[2] + i * s[2])));
                        }
                      });
    }
  });
}

void where(const Tensor& condition, const Tensor& a, const Tensor& b, Tensor& out) {
  SY_CHECK(condition.dtype() == DType::kBool, "where: condition must be bool, got ",
           dtype_name(condition.dtype()));
  dispatch_all(out.dtype(), [&]<typename T>() {
    strided_loop<4>(out.shape(),
                    {byte_pointer(out), byte_pointer(condition), byte_pointer(a), byte_pointer(b)},
                    {out.strides(), condition.strides(), a.strides(), b.strides()},
                    {sizeof(T), sizeof(bool), sizeof(T), sizeof(T)},
                    [](int64_t n, std::array<char*, 4> p, std::array<int64_t, 4> s) {
                      for (int64_t i = 0; i < n; ++i) {
                        bool c = *reinterpret_cast<const bool*>(p[1] + i * s[1]);
                        std::memcpy(p[0] + i * s[0], c ? p[2] + i * s[2] : p[3] + i * s[3], sizeof(T));
                      }
                    });
  });
}

}  // namespace sy::kernels::cpu
