// Rotary position embedding: the cos/sin tables and the rotation, whose backward is the
// rotation by the negative angle.
#include "core/ops/rotary.h"

#include "core/autograd/node.h"
#include "core/kernels/cpu/attention_kernels.h"
#include "core/ops/dispatch.h"

namespace sy {
namespace {

// x (B, T, H, D) contiguous rotated by +angle (sin_sign 1) or -angle (sin_sign -1).
Tensor rotate(const Tensor& x, const Tensor& cos, const Tensor& sin, double sin_sign) {
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  kernels::cpu::rotary(x, cos, sin, sin_sign, out);
  return out;
}

}  // namespace

std::pair<Tensor, Tensor> rotary_tables(int64_t T, int64_t D, double theta, int64_t offset) {
  SY_CHECK(T >= 0 && D > 0 && D % 2 == 0, "rotary_tables: T ", T, " and D ", D,
           " (D must be positive and even)");
  SY_CHECK(theta > 0, "rotary_tables: theta ", theta, " must be positive");
  Tensor cos = Tensor::empty({T, D / 2}, DType::kF32);
  Tensor sin = Tensor::empty({T, D / 2}, DType::kF32);
  kernels::cpu::rotary_tables(offset, theta, cos, sin);
  return {cos, sin};
}

Tensor rotary_embedding(const Tensor& x, const Tensor& cos, const Tensor& sin) {
  require_cpu("rotary_embedding", x);
  require_cpu("rotary_embedding", cos);
  require_cpu("rotary_embedding", sin);
  SY_CHECK(x.dim() == 4 && x.size(3) % 2 == 0, "rotary_embedding: x must be (B, T, H, D) with D even, got ",
           ShapeString(x.shape()));
  SY_CHECK(is_floating(x.dtype()), "rotary_embedding: x must be floating, got ", dtype_name(x.dtype()));
  SY_CHECK(cos.shape() == Shape({x.size(1), x.size(3) / 2}) && sin.shape() == cos.shape(),
           "rotary_embedding: x ", ShapeString(x.shape()), " needs cos and sin (T, D/2), got ",
           ShapeString(cos.shape()), " and ", ShapeString(sin.shape()));
  // The tables are constants of the position; a gradient for them would be dropped silently.
  SY_CHECK(!cos.requires_grad() && !sin.requires_grad(),
           "rotary_embedding: cos and sin carry no gradient; detach them");
  // Tables in the compute type of x: f64 for f64, f32 otherwise (bf16 tables would round the angle).
  const DType table_dtype = x.dtype() == DType::kF64 ? DType::kF64 : DType::kF32;
  Tensor cos_table = cos.detach().to(table_dtype).contiguous();
  Tensor sin_table = sin.detach().to(table_dtype).contiguous();
  Tensor out = rotate(x.detach().contiguous(), cos_table, sin_table, 1.0);
  record("RotaryEmbeddingBackward", {x}, {out}, [cos_table, sin_table](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{rotate(g[0].contiguous(), cos_table, sin_table, -1.0)};
  });
  return out;
}

}  // namespace sy
