// Shared by the optim tests: seeded random tensors, named parameter sets, exact and normwise
// relative comparisons.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace sy::testing {

using NamedParameters = std::vector<std::pair<std::string, Tensor>>;

// Normal(0, scale) values from `seed`, stored in `dtype` (rounded there).
inline Tensor random_normal(const Shape& shape, uint64_t seed, double scale = 1.0,
                            DType dtype = DType::kF32) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, scale);
  std::vector<double> values(static_cast<size_t>(shape_numel(shape)));
  for (double& value : values) value = normal(rng);
  return Tensor::from_vector(values, shape, dtype);
}

// Fresh leaves that require grad, holding the same values.
inline NamedParameters clone_parameters(const NamedParameters& parameters) {
  NamedParameters out;
  for (const auto& [name, tensor] : parameters) {
    out.emplace_back(name, tensor.detach().clone().set_requires_grad(true));
  }
  return out;
}

// Same shape and the same value everywhere (through f64, which every float dtype converts to
// exactly).
inline ::testing::AssertionResult same_values(const Tensor& actual, const Tensor& expected) {
  if (actual.shape() != expected.shape()) {
    return ::testing::AssertionFailure() << "shapes " << ShapeString(actual.shape()) << " and "
                                         << ShapeString(expected.shape());
  }
  std::vector<double> a = actual.to_vector<double>(), e = expected.to_vector<double>();
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] != e[i]) {
      return ::testing::AssertionFailure() << "element " << i << ": " << a[i] << " vs " << e[i];
    }
  }
  return ::testing::AssertionSuccess();
}

// max |actual - expected| / max |expected| over the tensor.
inline double normwise_relative_error(const Tensor& actual, const Tensor& expected) {
  EXPECT_EQ(actual.shape(), expected.shape());
  if (actual.shape() != expected.shape()) return INFINITY;
  std::vector<double> a = actual.to_vector<double>(), e = expected.to_vector<double>();
  double difference = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) || std::isnan(e[i])) return INFINITY;
    difference = std::max(difference, std::abs(a[i] - e[i]));
    scale = std::max(scale, std::abs(e[i]));
  }
  return scale > 0 ? difference / scale : difference;
}

}  // namespace sy::testing
