// The SwiGLU feed-forward block of Llama: down_proj(silu(gate_proj(x)) * up_proj(x)).
#pragma once

#include <memory>

#include "core/nn/linear.h"

namespace sy {

// x (..., C) -> (..., C) through a hidden width F; no biases.
class SwiGLU : public Module {
 public:
  SwiGLU(int64_t C, int64_t F, double init_std = 0.02, Generator* generator = nullptr);
  Tensor forward(const Tensor& x) const;

  std::shared_ptr<Linear> gate_proj;  // weight (F, C)
  std::shared_ptr<Linear> up_proj;    // weight (F, C)
  std::shared_ptr<Linear> down_proj;  // weight (C, F)
};

}  // namespace sy
