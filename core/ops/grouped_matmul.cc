// grouped_matmul: the expert GEMM over variable row counts. The input gradient is the same
// op on a transposed view of w (read by BLAS without a copy); the weight gradient is one
// x_e^T @ dout_e per group. bf16/f16 are computed in f32: on the CPU by casting to f32, on
// CUDA as cuBLASLt's f32 accumulation of the bf16/f16 operands.
#include "core/ops/grouped_matmul.h"

#include "core/autograd/node.h"
#include "core/kernels/cpu/cpu_kernels.h"
#include "core/kernels/cpu/grouped_gemm_kernels.h"
#include "core/ops/dispatch.h"

namespace sy {
namespace {

namespace cpu = kernels::cpu;

bool blas_type(DType dtype) { return dtype == DType::kF32 || dtype == DType::kF64; }

// The product in x's dtype, recording nothing.
Tensor product(Tensor x, Tensor w, const std::vector<int64_t>& counts) {
  const DType dtype = x.dtype();
  if (x.device().is_cuda()) {
    x = x.contiguous();
    Tensor out = Tensor::empty({x.size(0), w.size(2)}, dtype, x.device());
    SY_CUDA_KERNEL("grouped_matmul", kernels::cuda::grouped_gemm(x, w, counts, out));
    return out;
  }
  if (!blas_type(dtype)) {
    x = x.to(DType::kF32);
    w = w.to(DType::kF32);
  }
  x = x.contiguous();
  if (!cpu::grouped_gemm_reads_weight(w)) w = w.contiguous();
  Tensor out = Tensor::empty({x.size(0), w.size(2)}, x.dtype());
  cpu::grouped_gemm(x, w, counts, out);
  return blas_type(dtype) ? out : out.to(dtype);
}

// dw (E, Cin, Cout) in `dtype` from x (N, Cin) and dout (N, Cout).
Tensor weight_gradient(Tensor x, Tensor dout, const std::vector<int64_t>& counts, const Shape& w_shape,
                       DType dtype) {
  if (x.device().is_cuda()) {
    x = x.contiguous();
    dout = dout.to(dtype).contiguous();
    Tensor dw = Tensor::empty(w_shape, dtype, x.device());
    SY_CUDA_KERNEL("grouped_matmul", kernels::cuda::grouped_gemm_weight_grad(x, dout, counts, dw));
    return dw;
  }
  if (!blas_type(dtype)) {
    x = x.to(DType::kF32);
    dout = dout.to(DType::kF32);
  }
  x = x.contiguous();
  dout = dout.to(x.dtype()).contiguous();
  Tensor dw = Tensor::empty(w_shape, x.dtype());
  cpu::grouped_gemm_weight_grad(x, dout, counts, dw);
  return blas_type(dtype) ? dw : dw.to(dtype);
}

}  // namespace

Tensor grouped_matmul(const Tensor& x, const Tensor& w, const std::vector<int64_t>& counts) {
  require_same_device("grouped_matmul", x, w);
  SY_CHECK(x.dim() == 2 && w.dim() == 3 && x.size(1) == w.size(1), "grouped_matmul: x ",
           ShapeString(x.shape()), " and w ", ShapeString(w.shape()), " (expected x (N, Cin), w (E, Cin, Cout))");
  SY_CHECK(static_cast<int64_t>(counts.size()) == w.size(0), "grouped_matmul: ", counts.size(),
           " counts for w ", ShapeString(w.shape()));
  int64_t total = 0;
  for (int64_t n : counts) {
    SY_CHECK(n >= 0, "grouped_matmul: negative count ", n);
    total += n;
  }
  SY_CHECK(total == x.size(0), "grouped_matmul: counts sum to ", total, " for x ", ShapeString(x.shape()));
  SY_CHECK(x.dtype() == w.dtype(), "grouped_matmul: dtypes ", dtype_name(x.dtype()), " and ",
           dtype_name(w.dtype()), " differ");
  Tensor out = product(x.detach(), w.detach(), counts);
  record("GroupedMatmulBackward", {x, w}, {out},
         [saved_x = SavedTensor(x), saved_w = SavedTensor(w), counts, need_x = x.requires_grad(),
          need_w = w.requires_grad()](const std::vector<Tensor>& g) {
           Tensor x = saved_x.get(), w = saved_w.get();
           Tensor gx = need_x ? grouped_matmul(g[0], w.transpose(1, 2), counts) : Tensor();
           Tensor gw = need_w ? weight_gradient(x, g[0].detach(), counts, w.shape(), w.dtype()) : Tensor();
           return std::vector<Tensor>{gx, gw};
         });
  return out;
}

}  // namespace sy
