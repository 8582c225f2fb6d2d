// The router: scores, (group-limited, biased) top-k selection and routing weights, composed of
// core ops so that autograd and every device come for free. Conventions in router.h.
#include "moe/router.h"

#include <algorithm>
#include <limits>

#include "core/autograd/grad_mode.h"
#include "core/ops/ops.h"

namespace sy {

namespace {

// selection (N, E) with every expert outside the group_topk best of num_groups groups set to
// -inf. A group's score is the sum of its min(2, E / num_groups) best selection scores.
Tensor mask_to_best_groups(const Tensor& selection, int64_t num_groups, int64_t group_topk) {
  const int64_t N = selection.size(0), E = selection.size(1);
  const int64_t per_group = E / num_groups;
  Tensor grouped = selection.reshape({N, num_groups, per_group});
  Tensor group_scores = sum(topk(grouped, std::min<int64_t>(2, per_group), -1).first, {-1});  // (N, G)
  Tensor best_groups = topk(group_scores, group_topk, -1).second;                             // (N, group_topk)
  Tensor kept = sum(one_hot(best_groups, num_groups).to(selection.dtype()), {1});             // (N, G) 1 or 0
  Tensor dropped = eq(kept, scalar_like(kept, 0.0)).unsqueeze(-1);                             // (N, G, 1)
  return masked_fill(grouped, dropped, -std::numeric_limits<double>::infinity()).reshape({N, E});
}

}  // namespace

RoutingOutput route(const Tensor& logits, const MoeConfig& config, const Tensor& expert_bias) {
  const int64_t E = config.num_experts, K = config.top_k;
  SY_CHECK(logits.dim() == 2 && logits.size(1) == E, "route: logits ", ShapeString(logits.shape()),
           ", expected (N, E = ", E, ")");
  SY_CHECK(is_floating(logits.dtype()), "route: logits must be floating point");
  SY_CHECK(K >= 1 && K <= E, "route: top_k ", K, " not in [1, E = ", E, "]");
  SY_CHECK(config.num_groups >= 1 && E % config.num_groups == 0, "route: num_groups ", config.num_groups,
           " must divide E = ", E);
  SY_CHECK(config.group_topk >= 1 && config.group_topk <= config.num_groups &&
               K <= config.group_topk * (E / config.num_groups),
           "route: group_topk ", config.group_topk, " of ", config.num_groups, " groups leaves fewer than K = ", K,
           " experts");
  if (config.expert_bias) {
    SY_CHECK(expert_bias.defined() && expert_bias.shape() == Shape{E}, "route: expert_bias ",
             expert_bias.defined() ? ShapeString(expert_bias.shape()) : std::string("undefined"),
             ", expected (E = ", E, ")");
  }
  const bool sigmoid_scores = config.score_function == ScoreFunction::kSigmoid;
  const bool softmax_first = sigmoid_scores || config.pre_softmax;

  RoutingOutput out;
  out.logits = logits;
  Tensor probabilities = sigmoid_scores ? sigmoid(logits) : softmax(logits, -1);  // (N, E)
  {
    // Selection is not differentiable: rank detached values.
    NoGradGuard no_grad;
    Tensor selection = softmax_first ? probabilities.detach() : logits.detach();
    if (config.expert_bias) selection = selection + expert_bias.to(selection.dtype());
    if (config.num_groups > 1) selection = mask_to_best_groups(selection, config.num_groups, config.group_topk);
    out.topk_indices = topk(selection, K, -1).second;  // (N, K)
  }
  Tensor weights;  // (N, K)
  if (softmax_first) {
    weights = gather(probabilities, 1, out.topk_indices);
    if (sigmoid_scores) {
      weights = weights / (sum(weights, {-1}, true) + 1e-20);
    } else if (config.renormalize) {
      weights = weights / sum(weights, {-1}, true);
    }
  } else {
    weights = softmax(gather(logits, 1, out.topk_indices), -1);
  }
  if (config.routing_scale != 1.0) weights = weights * config.routing_scale;
  out.topk_weights = weights;
  out.scores = sigmoid_scores ? probabilities / (sum(probabilities, {-1}, true) + 1e-20) : probabilities;
  return out;
}

Router::Router(const MoeConfig& config, int64_t hidden_size, double init_std, Generator* generator)
    : config_(config) {
  SY_CHECK(config.num_experts > 0 && hidden_size > 0, "Router: E = ", config.num_experts, ", C = ", hidden_size,
           " must be positive");
  Tensor weight = Tensor::empty({config.num_experts, hidden_size}, DType::kF32);
  normal_(weight, 0.0, init_std, generator);
  weight_ = register_parameter("weight", weight);
  if (config.expert_bias) {
    expert_bias_ = register_buffer("expert_bias", Tensor::zeros({config.num_experts}, DType::kF32));
  }
}

RoutingOutput Router::forward(const Tensor& x) {
  SY_CHECK(x.dim() == 2 && x.size(1) == weight_.size(1), "Router: x ", ShapeString(x.shape()),
           ", expected (N, C = ", weight_.size(1), ")");
  Tensor x32 = x.to(DType::kF32);
  if (is_training() && config_.input_jitter > 0) {
    const double eps = config_.input_jitter;
    Tensor noise = rand(x32.shape(), DType::kF32);
    if (!x32.device().is_cpu()) noise = noise.to(x32.device());
    x32 = x32 * (noise * (2 * eps) + (1 - eps));
  }
  return route(linear(x32, weight_), config_, expert_bias_);
}

void Router::update_expert_bias(const Tensor& tokens_per_expert) {
  SY_CHECK(config_.expert_bias && expert_bias_.defined(),
           "update_expert_bias: the router was built without moe.expert_bias");
  SY_CHECK(tokens_per_expert.shape() == expert_bias_.shape(), "update_expert_bias: tokens_per_expert ",
           ShapeString(tokens_per_expert.shape()), ", expected (E = ", expert_bias_.size(0), ")");
  NoGradGuard no_grad;
  Tensor load = tokens_per_expert.to(expert_bias_.device()).to(DType::kF32);
  Tensor mean_load = mean(load);
  // sign(mean - load): underloaded experts (load < mean) gain, overloaded ones lose.
  Tensor direction = gt(mean_load, load).to(DType::kF32) - lt(mean_load, load).to(DType::kF32);
  expert_bias_.add_(direction, config_.bias_update_rate);
}

}  // namespace sy
