// The CPU kernels of the row-wise nn ops: softmax, fused norms, fused cross-entropy. Same
// contract as cpu_kernels.h: preallocated contiguous outputs, shapes checked by the op;
// activation gradients are written (=), parameter gradients accumulated (+=).
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace sy::kernels::cpu {

// Rows of length L of a contiguous x (rows, L): out = softmax(x) or log_softmax(x).
void softmax_rows(const Tensor& x, int64_t row_length, bool log, Tensor& out);
// From the saved output y: grad_x = y * (g - sum(g * y)) for softmax,
// grad_x = g - exp(y) * sum(g) for log_softmax. All contiguous (rows, L), one dtype.
void softmax_backward_rows(const Tensor& y, const Tensor& grad, int64_t row_length, bool log,
                           Tensor& grad_x);

// x (rows, C), weight (C) -> out (rows, C) = x * rstd * weight, rstd (rows) = rsqrt(mean(x^2) + eps).
// rstd is f64 for f64 x, f32 otherwise.
void rms_norm(const Tensor& x, const Tensor& weight, double eps, Tensor& out, Tensor& rstd);
// grad_x (rows, C) written; grad_weight (C) accumulated.
void rms_norm_backward(const Tensor& grad, const Tensor& x, const Tensor& weight, const Tensor& rstd,
                       Tensor& grad_x, Tensor& grad_weight);

// out = (x - mean) * rstd * weight + bias; mean and rstd (rows) saved as for rms_norm.
// bias may be undefined.
void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, Tensor& out,
                Tensor& mean, Tensor& rstd);
// grad_x written; grad_weight and grad_bias (when defined) accumulated.
void layer_norm_backward(const Tensor& grad, const Tensor& x, const Tensor& weight, const Tensor& mean,
                         const Tensor& rstd, Tensor& grad_x, Tensor& grad_weight, Tensor& grad_bias);

// logits (N, V), targets (N) i32/i64 -> losses (N) f64 (0 on ignored rows) and
// logsumexp (N) (f64 for f64 logits, f32 otherwise). Fails on a target outside [0, V)
// that is not ignore_index.
void cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                   double label_smoothing, Tensor& losses, Tensor& logsumexp);
// grad_logits (N, V) = row_scale[n] * (softmax(logits) - q), q = (1 - s) * onehot(t) + s / V;
// zero on ignored rows. row_scale (N) f64, any stride (a broadcast scalar has stride 0).
void cross_entropy_backward(const Tensor& logits, const Tensor& targets, const Tensor& logsumexp,
                            const Tensor& row_scale, int64_t ignore_index, double label_smoothing,
                            Tensor& grad_logits);

}  // namespace sy::kernels::cpu
