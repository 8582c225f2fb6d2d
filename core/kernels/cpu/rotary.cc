// Rotary position embedding, rotate-half convention: for each (b, t, h) and i < D/2,
//   out[i]       = x[i] cos[t, i] - x[i + D/2] sin[t, i]
//   out[i + D/2] = x[i + D/2] cos[t, i] + x[i] sin[t, i]
// A rotation is orthogonal, so the gradient is the same kernel with the angle negated:
//   grad_x = rotary(grad_out, cos, -sin)  (written =).
#include <cmath>

#include "core/kernels/cpu/attention_kernels.h"
#include "core/kernels/cpu/loops.h"

namespace sy::kernels::cpu {

void rotary_tables(int64_t offset, double theta, Tensor& cos, Tensor& sin) {
  const int64_t T = cos.size(0), half = cos.size(1);
  SY_CHECK(cos.dtype() == DType::kF32 && sin.dtype() == DType::kF32 && sin.shape() == cos.shape(),
           "rotary_tables: cos ", ShapeString(cos.shape()), " sin ", ShapeString(sin.shape()));
  float* cos_data = cos.data<float>();
  float* sin_data = sin.data<float>();
  // Angles in f64: positions reach 1e5 and more, where an f32 product loses the phase.
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t i = 0; i < half; ++i) {
      const double frequency = std::pow(theta, -static_cast<double>(2 * i) / static_cast<double>(2 * half));
      const double angle = static_cast<double>(offset + t) * frequency;
      cos_data[t * half + i] = static_cast<float>(std::cos(angle));
      sin_data[t * half + i] = static_cast<float>(std::sin(angle));
    }
  }
}

void rotary(const Tensor& x, const Tensor& cos, const Tensor& sin, double sin_sign, Tensor& out) {
  SY_CHECK(x.dim() == 4 && x.size(3) % 2 == 0 && out.shape() == x.shape() && out.dtype() == x.dtype(),
           "rotary: x ", ShapeString(x.shape()), " out ", ShapeString(out.shape()));
  const int64_t B = x.size(0), T = x.size(1), H = x.size(2), D = x.size(3), half = D / 2;
  SY_CHECK(cos.shape() == Shape({T, half}) && sin.shape() == cos.shape(), "rotary: x ",
           ShapeString(x.shape()), " needs cos and sin (T, D/2) = ", ShapeString({T, half}), ", got ",
           ShapeString(cos.shape()), " and ", ShapeString(sin.shape()));
  dispatch_floating(x.dtype(), "rotary", [&]<typename Scalar>() {
    using V = compute_t<Scalar>;
    SY_CHECK(cos.dtype() == (std::is_same_v<V, double> ? DType::kF64 : DType::kF32) &&
                 sin.dtype() == cos.dtype(),
             "rotary: tables of dtype ", dtype_name(cos.dtype()), " for x of ", dtype_name(x.dtype()));
    const Scalar* input = x.data<Scalar>();
    Scalar* output = out.data<Scalar>();
    const V* cos_data = cos.data<V>();
    const V* sin_data = sin.data<V>();
    const V sign = static_cast<V>(sin_sign);
    const int64_t rows = B * T * H;
#pragma omp parallel for schedule(static) if (rows * D >= 2 * kParallelGrain)
    for (int64_t row = 0; row < rows; ++row) {
      const int64_t t = (row / H) % T;
      const Scalar* in = input + row * D;
      Scalar* o = output + row * D;
      for (int64_t i = 0; i < half; ++i) {
        const V c = cos_data[t * half + i], s = sign * sin_data[t * half + i];
        const V first = load<Scalar>(in + i), second = load<Scalar>(in + i + half);
        store<Scalar>(o + i, first * c - second * s);
        store<Scalar>(o + i + half, second * c + first * s);
      }
    }
  });
}

}  // namespace sy::kernels::cpu
