// The CUDA kernels (built under SY_WITH_CUDA). Same contract as the CPU kernels: outputs
// are preallocated on the device, shapes are checked by the calling op, and every launch
// runs on the current stream of the tensor's device and is checked. bf16/f16 compute in
// f32; matmul takes bf16 (or f32/f16) in and accumulates in f32 (cuBLASLt).
#pragma once

#include <cstdint>
#include <vector>

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

// ---- moe_kernels.cu: routing and token permutation ----
// The largest k a topk kernel keeps (one thread per row holds them in registers).
constexpr int64_t kMaxTopk = 16;
// The k best of every contiguous row of x (rows, row_length), best first; equal values keep the
// lower index first, NaN ranks as the largest (the CPU's order). values (rows, k) in x's dtype,
// indices (rows, k) i64, both contiguous.
void topk_rows(const Tensor& x, int64_t row_length, int64_t k, bool largest, Tensor& values, Tensor& indices);
// out (outer, M, inner) = x (outer, S, inner) at rows index (M) i64; index -1 gives a zero row.
// Contiguous, any dtype; the op checks the range.
void index_select_rows(const Tensor& x, const Tensor& index, Tensor& out);
// out (outer, S, inner) += alpha * source (outer, M, inner) at rows index (M); -1 is skipped.
// Floating dtypes; atomics in f32 (f64 for f64), bf16/f16 summed in an f32 copy of out.
void index_add_rows(Tensor& out, const Tensor& index, const Tensor& source, double alpha);

// ---- grouped_gemm_cuda.cc: the expert GEMM, one cuBLASLt product per group ----
// out (N, Cout) = x (N, Cin) @ w[e] (Cin, Cout) for the counts[e] rows of group e (row offsets
// from the host counts). x and out contiguous; w row-major or column-major per matrix (the
// transposed view the input gradient passes), else copied. f32 compute, bf16/f16/f32 (f64) in.
void grouped_gemm(const Tensor& x, const Tensor& w, const std::vector<int64_t>& counts, Tensor& out);
// dw[e] (Cin, Cout) = x_e^T (Cin, counts[e]) @ dout_e (counts[e], Cout), written (0 for an
// empty group); x, dout, dw contiguous.
void grouped_gemm_weight_grad(const Tensor& x, const Tensor& dout, const std::vector<int64_t>& counts, Tensor& dw);

}  // namespace sy::kernels::cuda
