#include "core/nn/mlp.h"

#include "core/ops/elementwise.h"

namespace sy {

SwiGLU::SwiGLU(int64_t C, int64_t F, double init_std, Generator* generator)
    : gate_proj(register_module("gate_proj", std::make_shared<Linear>(C, F, false, init_std, generator))),
      up_proj(register_module("up_proj", std::make_shared<Linear>(C, F, false, init_std, generator))),
      down_proj(register_module("down_proj", std::make_shared<Linear>(F, C, false, init_std, generator))) {}

Tensor SwiGLU::forward(const Tensor& x) const {
  return down_proj->forward(silu(gate_proj->forward(x)) * up_proj->forward(x));
}

}  // namespace sy
