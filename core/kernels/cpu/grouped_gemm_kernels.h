// CPU kernels of the grouped expert GEMM: rows grouped by expert (counts[0] rows for expert
// 0, then expert 1, ...), each group multiplied by its own matrix through OpenBLAS.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace sy::kernels::cpu {

// out (N, Cout) = x (N, Cin) with out[group e] = x[group e] @ w[e], w (E, Cin, Cout).
// x and out contiguous; w may be any view whose matrices are row-major or transposed
// (w.stride(2) == 1 or w.stride(1) == 1): the transposed one is read by BLAS without a copy.
// f32 or f64; empty groups are skipped.
void grouped_gemm(const Tensor& x, const Tensor& w, const std::vector<int64_t>& counts, Tensor& out);

// Whether grouped_gemm reads w (E, Cin, Cout) as it is (else the caller makes it contiguous).
bool grouped_gemm_reads_weight(const Tensor& w);

// dw (E, Cin, Cout) contiguous = x_e^T @ dout_e per group (written =; zeros for empty groups).
// x (N, Cin), dout (N, Cout) contiguous, f32 or f64.
void grouped_gemm_weight_grad(const Tensor& x, const Tensor& dout, const std::vector<int64_t>& counts,
                              Tensor& dw);

}  // namespace sy::kernels::cpu
