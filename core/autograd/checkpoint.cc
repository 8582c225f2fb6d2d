#include "core/autograd/checkpoint.h"

#include "core/autograd/engine.h"
#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/random.h"

namespace sy {

std::vector<Tensor> checkpoint(const CheckpointFunction& function,
                               const std::vector<Tensor>& inputs) {
  PhiloxState rng_at_forward = default_generator().state();
  std::vector<Tensor> outputs;
  {
    NoGradGuard no_grad;  // keep nothing but the inputs
    outputs = function(inputs);
  }
  // Record even when no input requires grad: fn may use parameters that do (the first
  // block of a stack), and only the recomputation in backward can reach them.
  if (!GradMode::enabled()) return outputs;
  for (Tensor& output : outputs) output = output.detach();

  std::vector<SavedTensor> saved;
  for (const Tensor& input : inputs) saved.emplace_back(input);
  std::vector<bool> input_requires_grad;
  for (const Tensor& input : inputs) input_requires_grad.push_back(input.requires_grad());

  record_unconditionally("CheckpointBackward", inputs, outputs,
         [function, saved, input_requires_grad, rng_at_forward](const std::vector<Tensor>& grads) {
           // Rerun the forward with the generator state it saw, then restore the present one.
           PhiloxState rng_now = default_generator().state();
           default_generator().set_state(rng_at_forward);
           std::vector<Tensor> detached;
           for (size_t i = 0; i < saved.size(); ++i) {
             Tensor input = saved[i].get().detach();
             if (input_requires_grad[i]) input.set_requires_grad(true);
             detached.push_back(input);
           }
           std::vector<Tensor> recomputed;
           {
             EnableGradGuard enable_grad;
             recomputed = function(detached);
           }
           default_generator().set_state(rng_now);
           std::vector<Tensor> roots, root_grads;
           for (size_t i = 0; i < recomputed.size(); ++i) {
             if (recomputed[i].requires_grad()) {
               roots.push_back(recomputed[i]);
               root_grads.push_back(grads[i]);
             }
           }
           if (!roots.empty()) run_backward(roots, root_grads, /*retain_graph=*/false);
           std::vector<Tensor> input_grads;
           for (const Tensor& input : detached) {
             input_grads.push_back(input.requires_grad() ? input.grad() : Tensor());
           }
           return input_grads;
         });
  return outputs;
}

}  // namespace sy
