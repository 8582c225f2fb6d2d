// The one op-test harness: adding an op means adding one OpCase. Each case is checked
//  - forward against a naive reference (plain loops over std::vector<double>, written
//    independently of the kernels) in f64 and f32,
//  - on non-contiguous views of the same inputs,
//  - gradients against central finite differences in f64 (differentiable inputs only),
//  - on CUDA against the CPU result when a device is present and the op has a kernel.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace sy::testing {

// A dense row-major copy of a tensor's values, with its shape: what references compute on.
struct HostArray {
  Shape shape;
  std::vector<double> values;

  static HostArray of(const Tensor& tensor);
  int64_t numel() const { return static_cast<int64_t>(values.size()); }
  // Flat index of a multi-index (row-major).
  int64_t index(const std::vector<int64_t>& position) const;
  Tensor to_tensor(DType dtype = DType::kF64) const;
};

using OpFunction = std::function<Tensor(const std::vector<Tensor>&)>;
using ReferenceFunction = std::function<HostArray(const std::vector<HostArray>&)>;

struct InputSpec {
  Shape shape;
  double low = -1.0;
  double high = 1.0;
  bool differentiable = true;   // floating inputs checked by finite differences
  DType dtype = DType::kF64;    // non-float inputs (indices, masks) keep their dtype
  // Custom values (e.g. valid indices); when set, low/high are ignored.
  std::function<Tensor()> make;
};

struct OpCase {
  std::string name;
  std::vector<InputSpec> inputs;
  OpFunction op;
  ReferenceFunction reference;  // may be empty for ops checked by other tests
  double forward_tolerance = 1e-10;   // relative + absolute, f64
  double f32_tolerance = 1e-5;
  double gradient_tolerance = 1e-6;
  bool check_gradient = true;
  bool cuda = false;                  // the op has a CUDA kernel: compare with the CPU
  double cuda_tolerance = 2e-2;       // bf16-level where CUDA computes in bf16
};

// Runs every check for one case, reporting failures through gtest.
void check_op(const OpCase& op_case);

// Random inputs with a fixed seed per case name.
std::vector<Tensor> make_inputs(const OpCase& op_case, DType float_dtype, uint64_t seed);

// Element-wise reference helpers: apply f to each element / each broadcast pair.
HostArray map_reference(const HostArray& x, const std::function<double(double)>& f);
HostArray broadcast_reference(const HostArray& a, const HostArray& b,
                              const std::function<double(double, double)>& f);

// Maximum of |a - b| / (1 + |b|) over all elements; shapes must match.
double max_relative_error(const Tensor& actual, const Tensor& expected);

}  // namespace sy::testing

#include <gtest/gtest.h>

namespace sy::testing {

// Parameterized over OpCase: each test file instantiates it with its cases, e.g.
//   INSTANTIATE_TEST_SUITE_P(Elementwise, OpCaseTest, ValuesIn(elementwise_cases()), OpCaseName);
class OpCaseTest : public ::testing::TestWithParam<OpCase> {};

// gtest prints a failing parameter by its name, not its bytes.
inline void PrintTo(const OpCase& op_case, std::ostream* os) { *os << op_case.name; }

inline std::string OpCaseName(const ::testing::TestParamInfo<OpCase>& info) { return info.param.name; }

}  // namespace sy::testing
