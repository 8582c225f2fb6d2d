// Elementwise ops: broadcasting, type promotion, kernel dispatch, and their gradients.
#include "core/ops/elementwise.h"

#include <cmath>

#include "core/autograd/node.h"
#include "core/kernels/cpu/cpu_kernels.h"
#include "core/ops/dispatch.h"
#include "core/ops/view.h"

namespace sy {

using kernels::cpu::BinaryOp;
using kernels::cpu::UnaryOp;

namespace {

Tensor run_unary(UnaryOp op, const Tensor& x, double alpha = 0, double beta = 0) {
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (x.device().is_cpu()) {
    kernels::cpu::unary(op, x, out, alpha, beta);
  } else {
    SY_CUDA_KERNEL("unary op", kernels::cuda::unary(op, x, out, alpha, beta));
  }
  return out;
}

Tensor run_binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  require_same_device("binary op", a, b);
  Shape shape = broadcast_shapes(a.shape(), b.shape());
  DType dtype = promote_types(a.dtype(), b.dtype());
  Tensor a_view = detail::broadcast_to(a.to(dtype).detach(), shape);
  Tensor b_view = detail::broadcast_to(b.to(dtype).detach(), shape);
  bool comparison = op >= BinaryOp::kEq;
  Tensor out = Tensor::empty(shape, comparison ? DType::kBool : dtype, a.device());
  if (a.device().is_cpu()) {
    kernels::cpu::binary(op, a_view, b_view, out);
  } else {
    SY_CUDA_KERNEL("binary op", kernels::cuda::binary(op, a_view, b_view, out));
  }
  return out;
}

// Gradient of a unary op whose derivative is a function of x: grad * f'(x).
Tensor unary_derivative(UnaryOp derivative_of, const Tensor& x) {
  // d/dx of silu, gelu: computed from their definitions with composed ops.
  switch (derivative_of) {
    case UnaryOp::kSilu: {
      Tensor s = sigmoid(x);
      return s * (1.0 + x * (1.0 - s));
    }
    case UnaryOp::kGelu: {
      constexpr double kInvSqrt2Pi = 0.39894228040143267794;
      Tensor cdf = (gelu(x) / x);  // 0.5 * (1 + erf(x / sqrt 2)), except at x = 0
      cdf = where(eq(x, scalar_like(x, 0.0)), scalar_like(x, 0.5), cdf);
      Tensor pdf = exp(x * x * -0.5) * kInvSqrt2Pi;
      return cdf + x * pdf;
    }
    default: SY_FAIL("no derivative rule");
  }
}

}  // namespace

Tensor scalar_like(const Tensor& x, double value) {
  DType dtype = is_floating(x.dtype()) ? x.dtype() : DType::kF32;
  if (!is_floating(x.dtype()) && value == std::floor(value)) dtype = x.dtype();
  return Tensor::scalar(value, dtype, x.device());
}

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = run_binary(BinaryOp::kAdd, a, b);
  Shape sa = a.shape(), sb = b.shape();
  record("AddBackward", {a, b}, {out}, [sa, sb](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{sum_to(g[0], sa), sum_to(g[0], sb)};
  });
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = run_binary(BinaryOp::kSub, a, b);
  Shape sa = a.shape(), sb = b.shape();
  record("SubBackward", {a, b}, {out}, [sa, sb](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{sum_to(g[0], sa), sum_to(neg(g[0]), sb)};
  });
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = run_binary(BinaryOp::kMul, a, b);
  bool need_a = a.requires_grad(), need_b = b.requires_grad();
  record("MulBackward", {a, b}, {out},
         [saved_a = SavedTensor(need_b ? a : Tensor()), saved_b = SavedTensor(need_a ? b : Tensor()),
          sa = a.shape(), sb = b.shape()](const std::vector<Tensor>& g) {
           Tensor ga = saved_b.get().defined() ? sum_to(mul(g[0], saved_b.get()), sa) : Tensor();
           Tensor gb = saved_a.get().defined() ? sum_to(mul(g[0], saved_a.get()), sb) : Tensor();
           return std::vector<Tensor>{ga, gb};
         });
  return out;
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = run_binary(BinaryOp::kDiv, a, b);
  record("DivBackward", {a, b}, {out},
         [saved_out = SavedTensor(out), saved_b = SavedTensor(b), sa = a.shape(),
          sb = b.shape()](const std::vector<Tensor>& g) {
           Tensor b = saved_b.get();
           Tensor ga = sum_to(div(g[0], b), sa);
           Tensor gb = sum_to(neg(mul(g[0], div(saved_out.get(), b))), sb);
           return std::vector<Tensor>{ga, gb};
         });
  return out;
}

Tensor pow(const Tensor& a, const Tensor& b) {
  Tensor out = run_binary(BinaryOp::kPow, a, b);
  record("PowBackward", {a, b}, {out},
         [saved_a = SavedTensor(a), saved_b = SavedTensor(b), saved_out = SavedTensor(out),
          sa = a.shape(), sb = b.shape()](const std::vector<Tensor>& g) {
           Tensor a = saved_a.get(), b = saved_b.get();
           Tensor ga = sum_to(g[0] * b * pow(a, b - 1.0), sa);
           Tensor gb = sum_to(g[0] * saved_out.get() * log(a), sb);
           return std::vector<Tensor>{ga, gb};
         });
  return out;
}

Tensor pow(const Tensor& x, double exponent) {
  Tensor out = run_unary(UnaryOp::kPowScalar, x, exponent);
  record("PowScalarBackward", {x}, {out},
         [saved_x = SavedTensor(x), exponent](const std::vector<Tensor>& g) {
           return std::vector<Tensor>{g[0] * pow(saved_x.get(), exponent - 1.0) * exponent};
         });
  return out;
}

Tensor maximum(const Tensor& a, const Tensor& b) {
  Tensor out = run_binary(BinaryOp::kMaximum, a, b);
  record("MaximumBackward", {a, b}, {out},
         [saved_a = SavedTensor(a), saved_b = SavedTensor(b), sa = a.shape(),
          sb = b.shape()](const std::vector<Tensor>& g) {
           Tensor a_wins = ge(saved_a.get(), saved_b.get());
           Tensor zero = scalar_like(g[0], 0.0);
           return std::vector<Tensor>{sum_to(where(a_wins, g[0], zero), sa),
                                      sum_to(where(a_wins, zero, g[0]), sb)};
         });
  return out;
}

Tensor minimum(const Tensor& a, const Tensor& b) {
  Tensor out = run_binary(BinaryOp::kMinimum, a, b);
  record("MinimumBackward", {a, b}, {out},
         [saved_a = SavedTensor(a), saved_b = SavedTensor(b), sa = a.shape(),
          sb = b.shape()](const std::vector<Tensor>& g) {
           Tensor a_wins = le(saved_a.get(), saved_b.get());
           Tensor zero = scalar_like(g[0], 0.0);
           return std::vector<Tensor>{sum_to(where(a_wins, g[0], zero), sa),
                                      sum_to(where(a_wins, zero, g[0]), sb)};
         });
  return out;
}

Tensor neg(const Tensor& x) {
  Tensor out = run_unary(UnaryOp::kNeg, x);
  record("NegBackward", {x}, {out},
         [](const std::vector<Tensor>& g) { return std::vector<Tensor>{neg(g[0])}; });
  return out;
}

Tensor exp(const Tensor& x) {
  Tensor out = run_unary(UnaryOp::kExp, x);
  record("ExpBackward", {x}, {out}, [saved_out = SavedTensor(out)](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{g[0] * saved_out.get()};
  });
  return out;
}

Tensor log(const Tensor& x) {
  Tensor out = run_unary(UnaryOp::kLog, x);
  record("LogBackward", {x}, {out}, [saved_x = SavedTensor(x)](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{g[0] / saved_x.get()};
  });
  return out;
}

Tensor sqrt(const Tensor& x) {
  Tensor out = run_unary(UnaryOp::kSqrt, x);
  record("SqrtBackward", {x}, {out}, [saved_out = SavedTensor(out)](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{g[0] / (saved_out.get() * 2.0)};
  });
  return out;
}

Tensor rsqrt(const Tensor& x) {
  Tensor out = run_unary(UnaryOp::kRsqrt, x);
  record("RsqrtBackward", {x}, {out}, [saved_out = SavedTensor(out)](const std::vector<Tensor>& g) {
    Tensor y = saved_out.get();
    return std::vector<Tensor>{g[0] * y * y * y * -0.5};
  });
  return out;
}

Tensor abs(const Tensor& x) {
  Tensor out = run_unary(UnaryOp::kAbs, x);
  record("AbsBackward", {x}, {out}, [saved_x = SavedTensor(x)](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{g[0] * run_unary(UnaryOp::kSign, saved_x.get())};
  });
  return out;
}

Tensor silu(const Tensor& x) {
  Tensor out = run_unary(UnaryOp::kSilu, x);
  record("SiluBackward", {x}, {out}, [saved_x = SavedTensor(x)](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{g[0] * unary_derivative(UnaryOp::kSilu, saved_x.get())};
  });
  return out;
}

Tensor gelu(const Tensor& x) {
  Tensor out = run_unary(UnaryOp::kGelu, x);
  record("GeluBackward", {x}, {out}, [saved_x = SavedTensor(x)](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{g[0] * unary_derivative(UnaryOp::kGelu, saved_x.get())};
  });
  return out;
}

Tensor sigmoid(const Tensor& x) {
  Tensor out = run_unary(UnaryOp::kSigmoid, x);
  record("SigmoidBackward", {x}, {out}, [saved_out = SavedTensor(out)](const std::vector<Tensor>& g) {
    Tensor y = saved_out.get();
    return std::vector<Tensor>{g[0] * y * (1.0 - y)};
  });
  return out;
}

Tensor tanh(const Tensor& x) {
  Tensor out = run_unary(UnaryOp::kTanh, x);
  record("TanhBackward", {x}, {out}, [saved_out = SavedTensor(out)](const std::vector<Tensor>& g) {
    Tensor y = saved_out.get();
    return std::vector<Tensor>{g[0] * (1.0 - y * y)};
  });
  return out;
}

Tensor relu(const Tensor& x) {
  Tensor out = run_unary(UnaryOp::kRelu, x);
  record("ReluBackward", {x}, {out}, [saved_out = SavedTensor(out)](const std::vector<Tensor>& g) {
    Tensor y = saved_out.get();
    return std::vector<Tensor>{where(gt(y, scalar_like(y, 0.0)), g[0], scalar_like(g[0], 0.0))};
  });
  return out;
}

Tensor clamp(const Tensor& x, double min, double max) {
  SY_CHECK(min <= max, "clamp: min ", min, " > max ", max);
  Tensor out = run_unary(UnaryOp::kClamp, x, min, max);
  record("ClampBackward", {x}, {out},
         [saved_x = SavedTensor(x), min, max](const std::vector<Tensor>& g) {
           Tensor x = saved_x.get();
           Tensor inside = mul(ge(x, scalar_like(x, min)).to(g[0].dtype()),
                               le(x, scalar_like(x, max)).to(g[0].dtype()));
           return std::vector<Tensor>{g[0] * inside};
         });
  return out;
}

Tensor eq(const Tensor& a, const Tensor& b) { return run_binary(BinaryOp::kEq, a, b); }
Tensor ne(const Tensor& a, const Tensor& b) { return run_binary(BinaryOp::kNe, a, b); }
Tensor lt(const Tensor& a, const Tensor& b) { return run_binary(BinaryOp::kLt, a, b); }
Tensor le(const Tensor& a, const Tensor& b) { return run_binary(BinaryOp::kLe, a, b); }
Tensor gt(const Tensor& a, const Tensor& b) { return run_binary(BinaryOp::kGt, a, b); }
Tensor ge(const Tensor& a, const Tensor& b) { return run_binary(BinaryOp::kGe, a, b); }

Tensor where(const Tensor& condition, const Tensor& a, const Tensor& b) {
  SY_CHECK(condition.dtype() == DType::kBool, "where: condition must be bool, got ",
           dtype_name(condition.dtype()));
  require_cpu("where", condition);
  Shape shape = broadcast_shapes(condition.shape(), broadcast_shapes(a.shape(), b.shape()));
  DType dtype = promote_types(a.dtype(), b.dtype());
  Tensor out = Tensor::empty(shape, dtype, a.device());
  kernels::cpu::where(detail::broadcast_to(condition, shape),
                      detail::broadcast_to(a.to(dtype).detach(), shape),
                      detail::broadcast_to(b.to(dtype).detach(), shape), out);
  record("WhereBackward", {a, b}, {out},
         [condition, sa = a.shape(), sb = b.shape()](const std::vector<Tensor>& g) {
           Tensor zero = scalar_like(g[0], 0.0);
           return std::vector<Tensor>{sum_to(where(condition, g[0], zero), sa),
                                      sum_to(where(condition, zero, g[0]), sb)};
         });
  return out;
}

Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  return where(mask, scalar_like(x, value), x);
}

}  // namespace sy
