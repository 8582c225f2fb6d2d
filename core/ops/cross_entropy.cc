// cross_entropy: the fused kernel gives per-row losses and log-sum-exps; the reduction over
// rows happens here in f64. Backward recomputes softmax from the logits and the saved lse.
#include "core/ops/cross_entropy.h"

#include <cmath>
#include <limits>

#include "core/autograd/node.h"
#include "core/kernels/cpu/nn_kernels.h"
#include "core/ops/dispatch.h"

namespace sy {

Tensor cross_entropy(const Tensor& logits_input, const Tensor& targets_input, const CrossEntropyOptions& options) {
  SY_CHECK(logits_input.dim() == 2 && is_floating(logits_input.dtype()), "cross_entropy: logits ",
           ShapeString(logits_input.shape()), " ", dtype_name(logits_input.dtype()),
           " (expected floating (N, V))");
  SY_CHECK(targets_input.dim() == 1 && targets_input.size(0) == logits_input.size(0) &&
               (targets_input.dtype() == DType::kI64 || targets_input.dtype() == DType::kI32),
           "cross_entropy: targets ", ShapeString(targets_input.shape()), " ", dtype_name(targets_input.dtype()),
           " for logits ", ShapeString(logits_input.shape()), " (expected i32/i64 (N))");
  SY_CHECK(options.label_smoothing >= 0 && options.label_smoothing <= 1,
           "cross_entropy: label_smoothing ", options.label_smoothing, " outside [0, 1]");
  require_cpu("cross_entropy", logits_input);
  require_cpu("cross_entropy", targets_input);
  const Tensor logits = logits_input.detach().contiguous();
  const Tensor targets = targets_input.detach().contiguous();
  const int64_t N = logits.size(0);
  const DType lse_dtype = logits.dtype() == DType::kF64 ? DType::kF64 : DType::kF32;
  Tensor losses = Tensor::empty({N}, DType::kF64);
  Tensor lse = Tensor::empty({N}, lse_dtype);
  kernels::cpu::cross_entropy(logits, targets, options.ignore_index, options.label_smoothing, losses, lse);

  const double* loss = losses.data<double>();
  int64_t counted = 0;
  double total = 0;
  for (int64_t n = 0; n < N; ++n) {
    const int64_t t = targets.dtype() == DType::kI64 ? targets.data<int64_t>()[n] : targets.data<int32_t>()[n];
    counted += t != options.ignore_index;
    total += loss[n];
  }
  Tensor out;
  switch (options.reduction) {
    case Reduction::kNone: out = losses.to(logits.dtype()); break;
    case Reduction::kSum: out = Tensor::scalar(total, logits.dtype()); break;
    // As torch: with every row ignored the mean is 0 / 0 = nan.
    case Reduction::kMean:
      out = Tensor::scalar(counted > 0 ? total / static_cast<double>(counted)
                                       : std::numeric_limits<double>::quiet_NaN(),
                           logits.dtype());
      break;
  }

  record("CrossEntropyBackward", {logits_input}, {out},
         [saved_logits = SavedTensor(logits), saved_targets = SavedTensor(targets), saved_lse = SavedTensor(lse),
          options, counted](const std::vector<Tensor>& g) {
           Tensor logits = saved_logits.get();
           const int64_t N = logits.size(0);
           Tensor row_scale;
           if (options.reduction == Reduction::kNone) {
             row_scale = g[0].to(DType::kF64).contiguous();
           } else {
             // A 0-d gradient: one scale for every row, broadcast with stride 0.
             double scale = g[0].to(DType::kF64).item();
             if (options.reduction == Reduction::kMean) scale /= static_cast<double>(counted);
             row_scale = Tensor::full({1}, scale, DType::kF64).expand({N});
           }
           Tensor grad_logits = Tensor::empty(logits.shape(), logits.dtype());
           kernels::cpu::cross_entropy_backward(logits, saved_targets.get(), saved_lse.get(), row_scale,
                                                options.ignore_index, options.label_smoothing, grad_logits);
           return std::vector<Tensor>{grad_logits};
         });
  return out;
}

}  // namespace sy
