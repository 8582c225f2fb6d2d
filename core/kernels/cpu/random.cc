// Philox fills. Element i of the output reads the stream indices named in index_kernels.h,
// so each element is a pure function of (seed, offset, i): the loop splits over cores
// freely, and a CUDA kernel that uses the same indices reproduces the values.
//   uniform: low + (high - low) * u_i
//   normal:  mean + std * (Box-Muller of u_{2(i/2)}, u_{2(i/2)+1})
//   dropout: keep_i = u_i >= p; out = keep ? x / (1 - p) : 0, and the same for its gradient.
#include <cmath>
#include <numbers>

#include "core/kernels/cpu/index_kernels.h"
#include "core/kernels/cpu/loops.h"

namespace sy::kernels::cpu {
namespace {

// Runs f(i) for i in [0, count), over the cores when large.
template <typename F>
void parallel_elements(int64_t count, F&& f) {
  const bool parallel = count >= 2 * kParallelGrain && !omp_in_parallel();
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t i = 0; i < count; ++i) f(i);
}

// A uniform in [0, 1) that stays below 1 after rounding to T (bits of precision of T).
template <typename T>
double uniform_for(PhiloxState state, int64_t i) {
  if constexpr (std::is_same_v<T, BFloat16>) {
    return static_cast<double>(philox_uint32(state, i) >> 24) * (1.0 / 256.0);
  } else if constexpr (std::is_same_v<T, Half>) {
    return static_cast<double>(philox_uint32(state, i) >> 21) * (1.0 / 2048.0);
  } else {
    return static_cast<double>(philox_uniform(state, i));
  }
}

}  // namespace

void uniform(PhiloxState state, double low, double high, Tensor& out) {
  SY_CHECK(out.is_contiguous(), "uniform: out must be contiguous");
  dispatch_floating(out.dtype(), "uniform", [&]<typename T>() {
    T* data = out.data<T>();
    const double width = high - low;
    parallel_elements(out.numel(), [=](int64_t i) { store<T>(data + i, low + width * uniform_for<T>(state, i)); });
  });
}

void normal(PhiloxState state, double mean, double std, Tensor& out) {
  SY_CHECK(out.is_contiguous(), "normal: out must be contiguous");
  dispatch_floating(out.dtype(), "normal", [&]<typename T>() {
    T* data = out.data<T>();
    parallel_elements(out.numel(), [=](int64_t i) {
      const int64_t pair = i - (i % 2);
      // 1 - u1 lies in (0, 1], so the log is finite.
      const double u1 = philox_uniform(state, pair), u2 = philox_uniform(state, pair + 1);
      const double radius = std::sqrt(-2.0 * std::log(1.0 - u1));
      const double angle = 2.0 * std::numbers::pi * u2;
      const double z = radius * (i % 2 == 0 ? std::cos(angle) : std::sin(angle));
      store<T>(data + i, mean + std * z);
    });
  });
}

void bernoulli_keep_mask(PhiloxState state, double p, Tensor& mask) {
  SY_CHECK(mask.is_contiguous() && mask.dtype() == DType::kBool, "dropout mask must be contiguous bool");
  bool* data = mask.data<bool>();
  parallel_elements(mask.numel(), [=](int64_t i) { data[i] = static_cast<double>(philox_uniform(state, i)) >= p; });
}

void masked_scale(const Tensor& x, const Tensor& mask, double scale, Tensor& out) {
  SY_CHECK(x.shape() == out.shape() && mask.shape() == out.shape() && x.dtype() == out.dtype() &&
               mask.dtype() == DType::kBool,
           "masked_scale: x ", ShapeString(x.shape()), " mask ", ShapeString(mask.shape()), " out ",
           ShapeString(out.shape()));
  dispatch_floating(out.dtype(), "dropout", [&]<typename T>() {
    using V = compute_t<T>;
    const V factor = static_cast<V>(scale);
    strided_loop<3>(out.shape(), {byte_pointer(out), byte_pointer(x), byte_pointer(mask)},
                    {out.strides(), x.strides(), mask.strides()}, {sizeof(T), sizeof(T), sizeof(bool)},
                    [factor](int64_t n, std::array<char*, 3> p, std::array<int64_t, 3> s) {
                      for (int64_t i = 0; i < n; ++i) {
                        bool keep = *reinterpret_cast<const bool*>(p[2] + i * s[2]);
                        store<T>(p[0] + i * s[0], keep ? load<T>(p[1] + i * s[1]) * factor : V(0));
                      }
                    });
  });
}

}  // namespace sy::kernels::cpu
