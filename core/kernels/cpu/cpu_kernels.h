// The CPU kernels. A kernel fills preallocated outputs from inputs and knows nothing of
// autograd; shapes are checked by the op that calls it. Gradient contract: activation
// gradients are written (=), never accumulated.
#pragma once

#include <cstdint>
#include <vector>

#include "core/kernels/kernel_ops.h"
#include "core/tensor.h"

namespace sy::kernels::cpu {

using kernels::UnaryOp;
using kernels::BinaryOp;
using kernels::ReduceOp;

// out = source, converting dtype; `source` has out's shape (possibly broadcast strides).
void copy(const Tensor& source, Tensor& out);
void fill(Tensor& out, double value);
// out = op(x); x and out share dtype and shape.
void unary(UnaryOp op, const Tensor& x, Tensor& out, double alpha = 0, double beta = 0);
// out = op(a, b); a and b have out's shape and one dtype; comparisons write bool out.
void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out);
// out = condition ? a : b; all have out's shape; a, b, out share dtype.
void where(const Tensor& condition, const Tensor& a, const Tensor& b, Tensor& out);

// Reduces the last `reduced` dims of a contiguous x into contiguous out (x.numel() / R rows).
void reduce_rows(ReduceOp op, const Tensor& x, int64_t row_length, Tensor& out);
// Index of the first maximum of each contiguous row; out is i64.
void argmax_rows(const Tensor& x, int64_t row_length, Tensor& out);

// out (M, N) = a (M, K) @ b (K, N) for f32/f64, any strides; batched over a leading dim
// when all three are 3-D.
void gemm(const Tensor& a, const Tensor& b, Tensor& out);

}  // namespace sy::kernels::cpu
