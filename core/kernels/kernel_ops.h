// The operation codes shared by the CPU and CUDA kernels.
#pragma once

namespace sy::kernels {

enum class UnaryOp {
  kNeg, kExp, kLog, kSqrt, kRsqrt, kAbs, kSilu, kGelu, kSigmoid, kTanh, kRelu,
  kPowScalar,  // x ^ alpha
  kClamp,      // min(max(x, alpha), beta)
  kSign,
  kReciprocal,
};

enum class BinaryOp { kAdd, kSub, kMul, kDiv, kPow, kMaximum, kMinimum, kEq, kNe, kLt, kLe, kGt, kGe };

enum class ReduceOp { kSum, kMax, kMin };

}  // namespace sy::kernels
