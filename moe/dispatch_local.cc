// Local token permutation. The plan is integer work on the CPU without autograd: a stable
// bucket sort of the N*K routed slots by expert (the order a stable argsort of the flat
// expert ids gives: expert-major, token order inside each expert), then the capacity cut.
// permute/unpermute are differentiable gathers and scatters over that plan.
#include "moe/dispatch_local.h"

#include <algorithm>
#include <cmath>

#include "core/autograd/grad_mode.h"
#include "core/ops/ops.h"

namespace sy {
namespace {

// Which of an over-capacity expert's slots (given in token order) survive, in token order.
std::vector<int64_t> kept_slots(const std::vector<int64_t>& slots, int64_t capacity, DropPolicy policy,
                                const std::vector<double>& weights) {
  if (static_cast<int64_t>(slots.size()) <= capacity) return slots;
  std::vector<int64_t> kept;
  if (policy == DropPolicy::kPosition) {
    kept.assign(slots.begin(), slots.begin() + capacity);
    return kept;
  }
  // kProbs: the highest weights; a stable sort makes the earlier token win a tie.
  kept = slots;
  std::stable_sort(kept.begin(), kept.end(), [&](int64_t a, int64_t b) { return weights[a] > weights[b]; });
  kept.resize(capacity);
  std::sort(kept.begin(), kept.end());
  return kept;
}

}  // namespace

DispatchPlan plan_dispatch(const Tensor& topk_indices, const Tensor& topk_weights, int64_t E,
                           double capacity_factor, DropPolicy policy, bool pad_to_capacity) {
  SY_CHECK(topk_indices.dim() == 2 && topk_weights.shape() == topk_indices.shape(),
           "plan_dispatch: topk_indices ", ShapeString(topk_indices.shape()), " and topk_weights ",
           ShapeString(topk_weights.shape()), " (expected both (N, K))");
  SY_CHECK(capacity_factor >= 0, "plan_dispatch: capacity_factor ", capacity_factor, " < 0");
  SY_CHECK(!pad_to_capacity || capacity_factor > 0, "plan_dispatch: pad_to_capacity needs a capacity_factor");
  const int64_t N = topk_indices.size(0), K = topk_indices.size(1);
  const std::vector<int64_t> experts = topk_indices.detach().to(Device::CPU()).to_vector<int64_t>();
  std::vector<std::vector<int64_t>> buckets(E);
  for (int64_t slot = 0; slot < N * K; ++slot) {
    SY_CHECK(experts[slot] >= 0 && experts[slot] < E, "plan_dispatch: expert id ", experts[slot],
             " out of range for E = ", E);
    buckets[experts[slot]].push_back(slot);
  }

  DispatchPlan plan;
  plan.tokens_per_expert.assign(E, 0);
  std::vector<int64_t> token_index, slot_index;
  token_index.reserve(N * K);
  slot_index.reserve(N * K);
  const bool capped = capacity_factor > 0;
  // Megatron's formula, in this order, so references reproduce it exactly.
  const int64_t capacity =
      capped ? static_cast<int64_t>(std::ceil(capacity_factor * static_cast<double>(N) * K / E)) : 0;
  std::vector<double> weights;
  if (capped && policy == DropPolicy::kProbs) weights = topk_weights.detach().to(Device::CPU()).to_vector<double>();
  for (int64_t e = 0; e < E; ++e) {
    const std::vector<int64_t> kept = capped ? kept_slots(buckets[e], capacity, policy, weights) : buckets[e];
    plan.dropped += static_cast<int64_t>(buckets[e].size() - kept.size());
    for (int64_t slot : kept) {
      token_index.push_back(slot / K);
      slot_index.push_back(slot);
    }
    int64_t rows = static_cast<int64_t>(kept.size());
    if (pad_to_capacity) {
      for (; rows < capacity; ++rows, ++plan.padded) {
        token_index.push_back(-1);
        slot_index.push_back(-1);
      }
    }
    plan.tokens_per_expert[e] = rows;
  }
  const int64_t M = static_cast<int64_t>(token_index.size());
  plan.token_index = Tensor::from_vector(token_index, {M}, DType::kI64);
  plan.slot_index = Tensor::from_vector(slot_index, {M}, DType::kI64);
  return plan;
}

namespace {

// index with every -1 (padding) replaced by `replacement`, on `device`.
Tensor padding_to(const Tensor& index, int64_t replacement, Device device) {
  std::vector<int64_t> values = index.to_vector<int64_t>();
  for (int64_t& v : values) {
    if (v < 0) v = replacement;
  }
  return Tensor::from_vector(values, index.shape(), DType::kI64).to(device);
}

}  // namespace

Tensor permute_tokens(const Tensor& x, const DispatchPlan& plan) {
  SY_CHECK(x.dim() == 2, "permute_tokens: x ", ShapeString(x.shape()), " (expected (N, C))");
  if (plan.padded == 0) return index_select(x, 0, plan.token_index.to(x.device()));
  // Padding rows read an appended zero row.
  const int64_t N = x.size(0);
  Tensor extended = cat({x, Tensor::zeros({1, x.size(1)}, x.dtype(), x.device())}, 0);
  return index_select(extended, 0, padding_to(plan.token_index, N, x.device()));
}

Tensor unpermute_tokens(const Tensor& y, const DispatchPlan& plan, const Tensor& topk_weights, int64_t N) {
  const int64_t M = plan.token_index.numel();
  SY_CHECK(y.dim() == 2 && y.size(0) == M, "unpermute_tokens: y ", ShapeString(y.shape()), " for a plan of ",
           M, " rows");
  SY_CHECK(topk_weights.dim() == 2 && topk_weights.size(0) == N, "unpermute_tokens: topk_weights ",
           ShapeString(topk_weights.shape()), " for N = ", N);
  const int64_t C = y.size(1);
  const int64_t slots = topk_weights.numel();
  Tensor flat_weights = topk_weights.reshape({-1}).to(y.dtype());
  Tensor row_weights;
  Tensor out;
  if (plan.padded == 0) {
    row_weights = index_select(flat_weights, 0, plan.slot_index.to(y.device()));
    out = index_add(Tensor::zeros({N, C}, y.dtype(), y.device()), 0, plan.token_index.to(y.device()),
                    y * row_weights.unsqueeze(1));
  } else {
    // Padding rows take an appended zero weight and land in a discarded row N.
    Tensor extended = cat({flat_weights, Tensor::zeros({1}, y.dtype(), y.device())}, 0);
    row_weights = index_select(extended, 0, padding_to(plan.slot_index, slots, y.device()));
    out = index_add(Tensor::zeros({N + 1, C}, y.dtype(), y.device()), 0,
                    padding_to(plan.token_index, N, y.device()), y * row_weights.unsqueeze(1))
              .narrow(0, 0, N);
  }
  return out;
}

}  // namespace sy
