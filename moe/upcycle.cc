// Upcycling (moe/upcycle.h): the shape checks and plan, then one pass that checks every dense
// tensor and a second that writes the MoE model's tensors, expert by expert.
#include "moe/upcycle.h"

#include <cmath>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/autograd/grad_mode.h"
#include "core/ops/ops.h"
#include "core/random.h"
#include "moe/model.h"

namespace sy {
namespace {

// A seed for one (layer, stream) pair, so that every expert's noise and every layer's router
// rows are the same whichever rank (under EP) draws them.
uint64_t mix_seed(uint64_t seed, int64_t layer, int64_t stream) {
  uint64_t z = seed ^ (static_cast<uint64_t>(layer) * 0x9E3779B97F4A7C15ull) ^
               (static_cast<uint64_t>(stream) * 0xC2B2AE3D27D4EB4Full);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
constexpr int64_t kRouterStream = -1;

template <typename Value>
absl::Status same(const char* key, Value dense, Value moe) {
  if (dense == moe) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(key, " differs: the dense model has ", dense, ", the MoE config ", moe,
                                                 " (upcycling keeps the attention, embeddings and norms as they are)"));
}

std::string layer_prefix(int64_t layer) { return absl::StrCat("layers.", layer, ".mlp."); }

// The routing weights' sum W over the K chosen experts (see UpcyclePlan), and whether it is
// the same for every token.
double routing_weight_sum(const MoeConfig& moe, bool* constant) {
  const bool varies = moe.score_function == ScoreFunction::kSoftmax && moe.pre_softmax && !moe.renormalize;
  *constant = !varies;
  if (varies) {
    return moe.routing_scale * static_cast<double>(moe.top_k) / static_cast<double>(moe.num_experts);
  }
  return moe.routing_scale;
}

// Whether group-limited routing keeps the G equal-scored experts of a copy together: routing
// groups of g experts either hold whole copies, or a copy spans G / g groups and the best
// group_topk groups come in whole copies.
bool groups_keep_copies(const MoeConfig& moe, int64_t granularity) {
  if (moe.num_groups <= 1) return true;
  const int64_t per_group = moe.num_experts / moe.num_groups;
  if (per_group % granularity == 0) return true;
  return granularity % per_group == 0 && moe.group_topk % (granularity / per_group) == 0;
}

double rms(const Tensor& x) { return std::sqrt(mean(x.to(DType::kF32) * x.to(DType::kF32)).item()); }

// Adds noise_std * normal(0, 1) to `target` (any view) from `generator`.
void add_noise(Tensor target, double noise_std, Generator* generator) {
  Tensor noise = Tensor::empty(target.shape(), DType::kF32);
  normal_(noise, 0.0, noise_std, generator);
  target.add_(noise.to(target.dtype()).to(target.device()));
}

}  // namespace

absl::StatusOr<UpcyclePlan> plan_upcycle(const ModelConfig& dense, const ModelConfig& moe, const UpcycleOptions& options) {
  for (absl::Status status : {dense.validate(), moe.validate()}) {
    if (!status.ok()) return status;
  }
  for (absl::Status status :
       {same("vocab_size", dense.vocab_size, moe.vocab_size), same("hidden_size", dense.hidden_size, moe.hidden_size),
        same("num_layers", dense.num_layers, moe.num_layers), same("num_heads", dense.num_heads, moe.num_heads),
        same("num_kv_heads", dense.num_kv_heads, moe.num_kv_heads), same("rope_theta", dense.rope_theta, moe.rope_theta),
        same("norm_eps", dense.norm_eps, moe.norm_eps)}) {
    if (!status.ok()) return status;
  }
  if (!dense.tie_embeddings && moe.tie_embeddings) {
    return absl::InvalidArgumentError(
        "tie_embeddings: the dense model has an LM head of its own (false), the MoE config ties it to the embedding "
        "(true); upcycling cannot drop the head");
  }
  if (options.noise < 0 || options.router_std < 0) {
    return absl::InvalidArgumentError(absl::StrCat("noise ", options.noise, " and router_std ", options.router_std,
                                                   " must be >= 0"));
  }
  const MoeConfig& m = moe.moe;
  if (m.num_experts == 0) {
    return absl::InvalidArgumentError("the MoE config has no MoE layer (moe.num_experts is 0): nothing to upcycle");
  }
  bool any_dense_layer = false;
  for (int64_t layer = 0; layer < dense.num_layers; ++layer) {
    if (dense.is_moe_layer(layer)) {
      return absl::InvalidArgumentError(absl::StrCat("layer ", layer, " of the dense model is an MoE layer (",
                                                     dense.moe.num_experts, " experts); upcycling needs a dense FFN"));
    }
    any_dense_layer = any_dense_layer || !moe.is_moe_layer(layer);
  }
  if (any_dense_layer && moe.ffn_size != dense.ffn_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ffn_size differs: the dense model has ", dense.ffn_size, ", the MoE config ", moe.ffn_size,
        " (the MoE config's dense layers copy the dense FFN as it is)"));
  }

  UpcyclePlan plan;
  plan.dense_ffn_size = dense.ffn_size;
  const int64_t E = m.num_experts, K = m.top_k, F = m.expert_ffn_size;
  const int64_t S = m.num_shared_experts * m.shared_expert_ffn_size;
  if (options.shared_experts == ExpertSource::kDense && S > 0) {
    if (S > dense.ffn_size || (S == dense.ffn_size && options.routed_experts == ExpertSource::kDense)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the shared experts' width num_shared_experts * shared_expert_ffn_size = ", S,
          " leaves no hidden units of the dense ffn_size ", dense.ffn_size, " for the routed experts"));
    }
    plan.shared_width = S;
    plan.shared_scale = m.shared_expert_gate ? 2.0 : 1.0;
  }
  plan.copies = E;
  if (options.routed_experts == ExpertSource::kDense) {
    const int64_t R = dense.ffn_size - plan.shared_width;
    if (R % F != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "expert_ffn_size ", F, " does not divide the dense FFN width ", R,
          plan.shared_width > 0 ? absl::StrCat(" (ffn_size ", dense.ffn_size, " less the ", plan.shared_width,
                                               " units of the shared experts)")
                                : std::string(" (ffn_size)")));
    }
    plan.granularity = R / F;
    if (E % plan.granularity != 0) {
      return absl::InvalidArgumentError(absl::StrCat("num_experts ", E, " is not a multiple of the granularity ",
                                                     plan.granularity, " (the dense FFN width ", R,
                                                     " / expert_ffn_size ", F, ")"));
    }
    plan.copies = E / plan.granularity;
  }
  if (options.granularity > 0 && options.granularity != plan.granularity) {
    return absl::InvalidArgumentError(absl::StrCat("granularity: asked for ", options.granularity,
                                                   ", but the widths give ", plan.granularity, " (dense width ",
                                                   dense.ffn_size - plan.shared_width, " / expert_ffn_size ", F, ")"));
  }

  bool constant_sum = false;
  const double weight_sum = routing_weight_sum(m, &constant_sum);
  plan.expert_scale = static_cast<double>(plan.granularity) / weight_sum;

  const int64_t G = plan.granularity;
  std::vector<std::string> broken;
  if (S > 0 && options.shared_experts == ExpertSource::kRandom) broken.push_back("the shared experts are freshly initialized");
  if (options.routed_experts == ExpertSource::kRandom) broken.push_back("the routed experts are freshly initialized");
  if (m.capacity_factor > 0) broken.push_back("capacity_factor > 0 can drop tokens");
  if (!constant_sum) {
    broken.push_back(absl::StrCat("pre_softmax without renormalize: the K weights sum to a per-token value (scaled for "
                                  "a uniform router, K / E = ", K, "/", E, ")"));
  }
  if (options.routed_experts == ExpertSource::kDense && G > 1) {
    if (options.router != RouterInit::kVirtualGroup) {
      broken.push_back(absl::StrCat("granularity ", G, " with a random router: top-k picks arbitrary slices"));
    } else if (K % G != 0) {
      broken.push_back(absl::StrCat("top_k ", K, " is not a multiple of the granularity ", G,
                                    ": top-k cannot take whole copies"));
    } else if (!groups_keep_copies(m, G)) {
      broken.push_back(absl::StrCat("num_groups ", m.num_groups, " / group_topk ", m.group_topk,
                                    " split the copies of ", G, " experts"));
    }
  }
  plan.exact = broken.empty();
  if (plan.exact) {
    plan.exactness = G == 1 ? absl::StrCat("exact: every expert is a copy of the dense FFN and the ", K,
                                           " routing weights sum to ", weight_sum)
                            : absl::StrCat("exact: virtual-group routing takes each of the ", G, " slices ",
                                           K / G == 1 ? std::string("once") : absl::StrCat(K / G, " times"),
                                           " (whole copies); down projections x ", plan.expert_scale);
    if (options.noise > 0) plan.exactness = absl::StrCat(plan.exactness, " (before the noise, ", options.noise, " x rms)");
  } else {
    plan.exactness = absl::StrCat("not exact: ", absl::StrJoin(broken, "; "));
  }
  return plan;
}

absl::StatusOr<UpcyclePlan> upcycle(const StateDict& dense_state, const ModelConfig& dense_config, Transformer& moe,
                                    const UpcycleOptions& options) {
  const ModelConfig& config = moe.config();
  absl::StatusOr<UpcyclePlan> planned = plan_upcycle(dense_config, config, options);
  if (!planned.ok()) return planned.status();
  const UpcyclePlan& plan = *planned;
  const MoeConfig& m = config.moe;
  const int64_t C = config.hidden_size, Fd = dense_config.ffn_size, F = m.expert_ffn_size, G = plan.granularity;
  const int64_t S = plan.shared_width;

  // Pass 1: every dense tensor the MoE model needs, present and of the right shape.
  auto dense_tensor = [&](const std::string& name, const Shape& shape) -> absl::StatusOr<Tensor> {
    auto it = dense_state.find(name);
    if (it == dense_state.end()) return absl::NotFoundError(absl::StrCat("the dense weights have no ", name));
    if (it->second.shape() != shape) {
      return absl::InvalidArgumentError(absl::StrCat("dense ", name, " has shape ", ShapeString(it->second.shape()),
                                                     ", expected ", ShapeString(shape)));
    }
    return it->second;
  };
  StateDict target = moe.state_dict();
  std::map<std::string, Tensor> copied;  // target name -> dense tensor copied as it is
  for (const auto& [name, tensor] : target) {
    bool in_moe_layer = false;
    for (int64_t layer = 0; layer < config.num_layers && !in_moe_layer; ++layer) {
      in_moe_layer = config.is_moe_layer(layer) && name.rfind(layer_prefix(layer), 0) == 0;
    }
    if (in_moe_layer) continue;
    const std::string source = name == "lm_head.weight" && dense_config.tie_embeddings ? "embed_tokens.weight" : name;
    absl::StatusOr<Tensor> found = dense_tensor(source, tensor.shape());
    if (!found.ok()) return found.status();
    copied[name] = *found;
  }
  struct DenseFfn {
    Tensor gate, up, down;  // (Fd, C), (Fd, C), (C, Fd)
  };
  std::map<int64_t, DenseFfn> ffns;
  for (int64_t layer = 0; layer < config.num_layers; ++layer) {
    if (!config.is_moe_layer(layer)) continue;
    DenseFfn& ffn = ffns[layer];
    for (auto [part, shape, slot] : {std::tuple{"gate_proj", Shape{Fd, C}, &ffn.gate},
                                     std::tuple{"up_proj", Shape{Fd, C}, &ffn.up},
                                     std::tuple{"down_proj", Shape{C, Fd}, &ffn.down}}) {
      absl::StatusOr<Tensor> found = dense_tensor(absl::StrCat(layer_prefix(layer), part, ".weight"), shape);
      if (!found.ok()) return found.status();
      *slot = *found;
    }
  }

  // Pass 2: write. Nothing below can fail on user input.
  NoGradGuard no_grad;
  for (auto& [name, tensor] : target) {
    if (auto it = copied.find(name); it != copied.end()) tensor.copy_(it->second);
  }
  std::map<std::string, int64_t> first_expert;  // expert tensor -> global index of its first local expert
  for (const ParameterShard& shard : moe.parameter_shards()) first_expert[shard.name] = shard.offsets.at(0);

  for (const auto& [layer, ffn] : ffns) {
    const std::string prefix = layer_prefix(layer);
    if (S > 0) {
      target.at(prefix + "shared_experts.gate_proj.weight").copy_(ffn.gate.narrow(0, 0, S));
      target.at(prefix + "shared_experts.up_proj.weight").copy_(ffn.up.narrow(0, 0, S));
      Tensor down = target.at(prefix + "shared_experts.down_proj.weight");
      down.copy_(ffn.down.narrow(1, 0, S));
      down.mul_(plan.shared_scale);
      if (m.shared_expert_gate) target.at(prefix + "shared_expert_gate.weight").zero_();
    }
    if (m.expert_bias) target.at(prefix + "gate.expert_bias").zero_();

    // Router: virtual groups share the row of their copy; with G = 1 both inits are the same.
    Tensor router = target.at(prefix + "gate.weight");  // (E, C)
    Generator router_generator(mix_seed(options.seed, layer, kRouterStream));
    const int64_t rows = options.router == RouterInit::kVirtualGroup ? plan.copies : m.num_experts;
    Tensor drawn = Tensor::empty({rows, C}, DType::kF32);
    normal_(drawn, 0.0, options.router_std, &router_generator);
    for (int64_t e = 0; e < m.num_experts; ++e) {
      router.select(0, e).copy_(drawn.select(0, options.router == RouterInit::kVirtualGroup ? e / G : e));
    }

    if (options.routed_experts != ExpertSource::kDense) continue;
    Tensor w1 = target.at(prefix + "experts.w1");  // (E_local, C, 2F)
    Tensor w2 = target.at(prefix + "experts.w2");  // (E_local, F, C)
    const int64_t offset = first_expert.count(prefix + "experts.w1") ? first_expert.at(prefix + "experts.w1") : 0;
    const double gate_noise = options.noise * rms(ffn.gate), up_noise = options.noise * rms(ffn.up);
    const double down_noise = options.noise * rms(ffn.down) * plan.expert_scale;
    for (int64_t local = 0; local < w1.size(0); ++local) {
      const int64_t e = offset + local, units = S + (e % G) * F;
      Tensor expert_w1 = w1.select(0, local), expert_w2 = w2.select(0, local);
      expert_w1.narrow(1, 0, F).copy_(ffn.gate.narrow(0, units, F).t());
      expert_w1.narrow(1, F, F).copy_(ffn.up.narrow(0, units, F).t());
      expert_w2.copy_(ffn.down.narrow(1, units, F).t());
      expert_w2.mul_(plan.expert_scale);
      if (options.noise > 0) {
        Generator noise_generator(mix_seed(options.seed, layer, e));
        add_noise(expert_w1.narrow(1, 0, F), gate_noise, &noise_generator);
        add_noise(expert_w1.narrow(1, F, F), up_noise, &noise_generator);
        add_noise(expert_w2, down_noise, &noise_generator);
      }
    }
  }
  return plan;
}

}  // namespace sy
