// Matrix products (OpenBLAS on the CPU, cuBLASLt on CUDA). bf16/f16 are computed in f32.
#pragma once

#include "core/tensor.h"

namespace sy {

// a (..., M, K) @ b (..., K, N) -> (..., M, N), batch dims broadcast; 1-D operands are
// treated as a row (a) or a column (b) and that dimension is dropped from the result.
Tensor matmul(const Tensor& a, const Tensor& b);
// x (..., Cin) @ weight (Cout, Cin)^T + bias (Cout) — the PyTorch weight layout.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

}  // namespace sy
