// matmul and linear. Batch dims broadcast; the backward is two more matmuls.
#include "core/ops/matmul.h"

#include "core/autograd/node.h"
#include "core/kernels/cpu/cpu_kernels.h"
#include "core/ops/dispatch.h"
#include "core/ops/elementwise.h"
#include "core/ops/view.h"

namespace sy {
namespace {

// out (batch, M, N) = a (batch, M, K) @ b (batch, K, N), recording nothing.
Tensor batched_product(const Tensor& a, const Tensor& b) {
  Tensor out = Tensor::empty({a.size(0), a.size(1), b.size(2)}, a.dtype(), a.device());
  if (a.device().is_cuda()) {
    SY_CUDA_KERNEL("matmul", kernels::cuda::gemm(a, b, out));
    return out;
  }
  if (a.dtype() == DType::kF32 || a.dtype() == DType::kF64) {
    kernels::cpu::gemm(a, b, out);
    return out;
  }
  // bf16/f16 on the CPU: computed in f32.
  Tensor out32 = Tensor::empty(out.shape(), DType::kF32);
  kernels::cpu::gemm(a.to(DType::kF32), b.to(DType::kF32), out32);
  kernels::cpu::copy(out32, out);
  return out;
}

// The raw product for operands of at least 2 dims with broadcast batch dims.
Tensor product(const Tensor& a, const Tensor& b) {
  SY_CHECK(a.size(-1) == b.size(-2), "matmul: a ", ShapeString(a.shape()), " and b ",
           ShapeString(b.shape()), " (inner sizes differ)");
  Shape a_batch(a.shape().begin(), a.shape().end() - 2);
  Shape b_batch(b.shape().begin(), b.shape().end() - 2);
  Shape batch = broadcast_shapes(a_batch, b_batch);
  const int64_t m = a.size(-2), k = a.size(-1), n = b.size(-1);
  const int64_t batch_count = shape_numel(batch);
  Shape a_full = batch, b_full = batch;
  a_full.insert(a_full.end(), {m, k});
  b_full.insert(b_full.end(), {k, n});
  // Fold batch dims into one where the strides allow (always for contiguous or broadcast-free).
  Tensor a3 = detail::broadcast_to(a, a_full);
  Tensor b3 = detail::broadcast_to(b, b_full);
  Shape a_strides;
  if (!detail::view_strides(a3, {batch_count, m, k}, &a_strides)) {
    a3 = a3.contiguous();
    detail::view_strides(a3, {batch_count, m, k}, &a_strides);
  }
  Shape b_strides;
  if (!detail::view_strides(b3, {batch_count, k, n}, &b_strides)) {
    b3 = b3.contiguous();
    detail::view_strides(b3, {batch_count, k, n}, &b_strides);
  }
  Tensor out = batched_product(detail::as_strided(a3, {batch_count, m, k}, a_strides, a3.offset()),
                               detail::as_strided(b3, {batch_count, k, n}, b_strides, b3.offset()));
  Shape out_shape = batch;
  out_shape.insert(out_shape.end(), {m, n});
  return detail::as_strided(out, out_shape, contiguous_strides(out_shape), 0);
}

}  // namespace

Tensor matmul(const Tensor& a_in, const Tensor& b_in) {
  require_same_device("matmul", a_in, b_in);
  SY_CHECK(a_in.dim() >= 1 && b_in.dim() >= 1, "matmul: 0-d operand");
  SY_CHECK(a_in.dtype() == b_in.dtype(), "matmul: dtypes ", dtype_name(a_in.dtype()), " and ",
           dtype_name(b_in.dtype()), " differ");
  // Vectors: a row for a, a column for b; the unit dim is dropped from the result.
  if (a_in.dim() == 1) return matmul(a_in.unsqueeze(0), b_in).squeeze(-2);
  if (b_in.dim() == 1) return matmul(a_in, b_in.unsqueeze(-1)).squeeze(-1);
  Tensor out = product(a_in.detach(), b_in.detach());
  record("MatmulBackward", {a_in, b_in}, {out},
         [saved_a = SavedTensor(a_in), saved_b = SavedTensor(b_in), need_a = a_in.requires_grad(),
          need_b = b_in.requires_grad()](const std::vector<Tensor>& g) {
           Tensor a = saved_a.get(), b = saved_b.get();
           Tensor ga = need_a ? sum_to(matmul(g[0], b.transpose(-1, -2)), a.shape()) : Tensor();
           Tensor gb = need_b ? sum_to(matmul(a.transpose(-1, -2), g[0]), b.shape()) : Tensor();
           return std::vector<Tensor>{ga, gb};
         });
  return out;
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  SY_CHECK(weight.dim() == 2 && x.size(-1) == weight.size(1), "linear: x ", ShapeString(x.shape()),
           " and weight ", ShapeString(weight.shape()), " (expected weight (Cout, ", x.size(-1), "))");
  // Fold leading dims into rows so one GEMM does the work.
  Shape out_shape = x.shape();
  out_shape.back() = weight.size(0);
  Tensor y = matmul(x.reshape({-1, x.size(-1)}), weight.t()).reshape(out_shape);
  if (bias.defined()) y = y + bias;
  return y;
}

}  // namespace sy
