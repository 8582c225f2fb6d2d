// Element types and their conversions. bf16 and f16 are stored as 16-bit patterns and
// computed in f32 on the CPU.
#pragma once

#include <cstdint>
#include <cstring>

namespace sy {

enum class DType : uint8_t { kF64, kF32, kBF16, kF16, kI32, kI64, kBool };

size_t element_size(DType dtype);
const char* dtype_name(DType dtype);
bool is_floating(DType dtype);
// The type both operands of a binary op are computed in (PyTorch-like promotion).
DType promote_types(DType a, DType b);

struct BFloat16 {
  uint16_t bits;
};
struct Half {
  uint16_t bits;
};

inline float bf16_to_float(uint16_t bits) {
  uint32_t u = static_cast<uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Round to nearest even; NaN stays NaN.
inline uint16_t float_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

float half_to_float(uint16_t bits);
uint16_t float_to_half(float f);

}  // namespace sy
