// The CUDA kernels (built under SY_WITH_CUDA). Same contract as the CPU kernels: outputs
// are preallocated on the device, shapes are checked by the calling op, and every launch
// runs on the current stream of the tensor's device and is checked. bf16/f16 compute in
// f32; matmul takes bf16 (or f32/f16) in and accumulates in f32 (cuBLASLt).
#pragma once

#include "core/kernels/kernel_ops.h"
#include "core/random.h"
#include "core/tensor.h"

namespace sy::kernels::cuda {

// out = source with dtype conversion; either side may be on the CPU (host<->device copies).
void copy(const Tensor& source, Tensor& out);
void fill(Tensor& out, double value);
// Supported: every UnaryOp; fails clearly for others.
void unary(UnaryOp op, const Tensor& x, Tensor& out, double alpha, double beta);
// a, b broadcast to out's shape (stride 0); comparisons write bool.
void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out);
// out (batch, M, N) = a (batch, M, K) @ b (batch, K, N) via cuBLASLt, any row/column-major
// operand layout (a copy is made otherwise).
void gemm(const Tensor& a, const Tensor& b, Tensor& out);
// Softmax over the last dim of a contiguous x into contiguous out.
void softmax_last_dim(const Tensor& x, Tensor& out);
// out = x * rsqrt(mean(x^2, last dim) + eps) * weight; rstd (rows) in f32 for backward.
void rms_norm(const Tensor& x, const Tensor& weight, double eps, Tensor& out, Tensor& rstd);
// out[i] = philox_uniform(state, i) (core/random.h) for the row-major index i: the CPU's values.
void philox_uniform(PhiloxState state, Tensor& out);

}  // namespace sy::kernels::cuda
