// exp that loops can vectorize. libm's expf is a call per element; this f32 version is
// branch-free arithmetic (Cody-Waite range reduction x = n ln2 + r, a degree-6 polynomial
// for e^r on |r| <= ln2 / 2 with the Cephes coefficients, 2^n assembled in the exponent
// bits), within 2 ulp of expf over the normal range. Below ln(FLT_MIN) it returns 0 (so
// exp(-inf) = 0 for masked scores), above ln(FLT_MAX) +inf, and NaN stays NaN. f64 keeps
// std::exp. Use inside loops marked `#pragma omp simd`.
#pragma once

#include <cmath>
#include <cstdint>
#include <bit>

namespace sy::kernels::cpu {

inline float exp_f32(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2High = 0.693359375f, kLn2Low = -2.12194440e-4f;
  constexpr float kRoundMagic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float clamped = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  const float n = (clamped * kLog2e + kRoundMagic) - kRoundMagic;
  const float r = (clamped - n * kLn2High) - n * kLn2Low;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const float scale = std::bit_cast<float>((static_cast<int32_t>(n) + 127) << 23);
  float result = p * scale;
  result = x < -87.33654f ? 0.0f : result;
  result = x > 88.72283f ? INFINITY : result;
  return x != x ? x : result;
}

inline float fast_exp(float x) { return exp_f32(x); }
inline double fast_exp(double x) { return std::exp(x); }

}  // namespace sy::kernels::cpu
