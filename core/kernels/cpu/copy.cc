// Strided copy with dtype conversion, and fill.
#include <cstring>

#include "core/kernels/cpu/cpu_kernels.h"
#include "core/kernels/cpu/loops.h"

namespace sy::kernels::cpu {

void copy(const Tensor& source, Tensor& out) {
  SY_CHECK(source.shape() == out.shape(), "copy: source ", ShapeString(source.shape()),
           " into ", ShapeString(out.shape()));
  if (source.dtype() == out.dtype() && source.is_contiguous() && out.is_contiguous()) {
    std::memcpy(out.data_ptr(), source.data_ptr(), out.nbytes());
    return;
  }
  dispatch_all(source.dtype(), [&]<typename S>() {
    dispatch_all(out.dtype(), [&]<typename D>() {
      strided_loop<2>(out.shape(), {byte_pointer(out), byte_pointer(source)},
                      {out.strides(), source.strides()}, {sizeof(D), sizeof(S)},
                      [](int64_t n, std::array<char*, 2> p, std::array<int64_t, 2> s) {
                        for (int64_t i = 0; i < n; ++i) {
                          store<D>(p[0] + i * s[0], load<S>(p[1] + i * s[1]));
                        }
                      });
    });
  });
}

void fill(Tensor& out, double value) {
  dispatch_all(out.dtype(), [&]<typename T>() {
    strided_loop<1>(out.shape(), {byte_pointer(out)}, {out.strides()}, {sizeof(T)},
                    [value](int64_t n, std::array<char*, 1> p, std::array<int64_t, 1> s) {
                      for (int64_t i = 0; i < n; ++i) store<T>(p[0] + i * s[0], value);
                    });
  });
}

}  // namespace sy::kernels::cpu
