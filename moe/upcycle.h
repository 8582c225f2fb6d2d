// Upcycling: a trained dense transformer's weights into an MoE transformer of the same
// attention shape. Embeddings, attention, norms and head are copied; each MoE layer's experts
// are built from the dense SwiGLU FFN of the same layer (coarse copies or fine-grained
// slices with the "virtual group" router of He et al. 2024), shared experts from its first
// hidden units. Which routing settings reproduce the dense model exactly: UpcyclePlan.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "core/nn/module.h"
#include "moe/config.h"

namespace sy {

class Transformer;

enum class RouterInit {
  kVirtualGroup,  // the G experts of one copy share a router row: top-k takes whole copies
  kRandom,        // every row its own normal(0, router_std) draw
};
enum class ExpertSource {
  kDense,   // from the dense FFN's weights
  kRandom,  // the MoE model's own initialization (not function-preserving)
};

struct UpcycleOptions {
  RouterInit router = RouterInit::kVirtualGroup;
  double router_std = 0.02;  // the router rows' normal(0, std) draw
  ExpertSource shared_experts = ExpertSource::kDense;
  ExpertSource routed_experts = ExpertSource::kDense;
  int64_t granularity = 0;  // G the caller expects (0: whatever the widths give); a mismatch is refused
  double noise = 0.0;       // routed expert weights += noise * rms(dense weight) * normal(0, 1), per expert
  uint64_t seed = 0;        // router rows and noise
};

// How the dense FFN of width Fd becomes the MoE layer, with F = moe.expert_ffn_size and
// S = moe.num_shared_experts * moe.shared_expert_ffn_size:
//   shared experts = hidden units [0, S) of the dense FFN (their down projection times
//     shared_scale: 2 with a Qwen2-style shared gate, whose weight starts at zero, sigmoid(0) = 1/2);
//   the remaining R = Fd - S units are cut into G = R / F slices; routed expert e is slice
//     e % G of copy e / G (E = G * copies), its down projection times expert_scale.
// With virtual-group routing every expert of a copy has the same score, so a top-k with K a
// multiple of G takes K / G whole copies, i.e. every slice K / G times. If the K routing weights
// sum to W, the routed output is (W / G) * expert_scale * (the dense FFN of the R units), so
// expert_scale = G / W restores it. W = routing_scale for Mixtral-style softmax over the K
// chosen, for pre_softmax with renormalize, and for sigmoid (always renormalized); for
// pre_softmax without renormalize W = the K chosen probabilities, which varies per token, and
// the plan takes W = routing_scale * K / E (a uniform router: approximate, as Megatron).
// The scale sits on the down projection, never on the gate: silu(s x) != s silu(x).
struct UpcyclePlan {
  int64_t dense_ffn_size = 0;  // Fd
  int64_t shared_width = 0;    // S units taken from the dense FFN (0 when none or random)
  int64_t granularity = 1;     // G (1: coarse, every expert a full copy of the R units)
  int64_t copies = 0;          // E / G
  double expert_scale = 1.0;   // on each routed expert's w2
  double shared_scale = 1.0;   // on the shared experts' down_proj
  bool exact = false;          // the MoE logits equal the dense ones (within f32 rounding, before noise)
  std::string exactness;       // why they do, or what breaks it
};

// Checks that `dense` can become `moe` (same vocabulary, width, layers, heads, rope and norm
// settings; every layer of `dense` dense; an MoE config's dense layers of the dense width;
// widths that divide), naming both values of whatever differs, and says how.
absl::StatusOr<UpcyclePlan> plan_upcycle(const ModelConfig& dense, const ModelConfig& moe, const UpcycleOptions& options);

// Writes every parameter and buffer of `moe` (built from its config, under EP holding only its
// experts: the local block of each expert tensor is filled, at the offsets parameter_shards()
// gives) from `dense_state`, the state dict of a Transformer of `dense_config`. Every dense
// tensor is checked (present, shape) before `moe` changes; a failure changes nothing.
absl::StatusOr<UpcyclePlan> upcycle(const StateDict& dense_state, const ModelConfig& dense_config, Transformer& moe,
                                    const UpcycleOptions& options);

}  // namespace sy
