// The transformer: embedding, pre-norm blocks (attention, then a dense or MoE FFN), final
// norm, LM head and loss; its initialization and its FLOP accounting.
#include "moe/model.h"

#include <cmath>
#include <string>

#include "absl/strings/match.h"
#include "core/autograd/checkpoint.h"
#include "core/autograd/grad_mode.h"
#include "core/nn/nn.h"
#include "core/ops/ops.h"
#include "core/random.h"

namespace sy {

// One pre-norm block: x + attn(norm(x)), then h + mlp(norm(h)). Named as Hugging Face Llama.
class TransformerBlock : public Module {
 public:
  TransformerBlock(const ModelConfig& config, int64_t layer, Generator* generator, const MoeParallel& parallel) {
    const double std = config.init_std;
    const double output_std = std / std::sqrt(2.0 * static_cast<double>(config.num_layers));
    input_layernorm = register_module("input_layernorm", std::make_shared<RMSNorm>(config.hidden_size, config.norm_eps));
    const AttentionShape shape{.C = config.hidden_size, .H = config.num_heads, .Hkv = config.num_kv_heads,
                               .max_T = config.max_seq_len, .rope_theta = config.rope_theta};
    self_attn = register_module("self_attn", std::make_shared<CausalSelfAttention>(shape, std, generator));
    post_attention_layernorm =
        register_module("post_attention_layernorm", std::make_shared<RMSNorm>(config.hidden_size, config.norm_eps));
    if (config.is_moe_layer(layer)) {
      moe = register_module("mlp", std::make_shared<MoeLayer>(config.moe, config.hidden_size, std, output_std, generator, parallel));
    } else {
      dense = register_module("mlp", std::make_shared<SwiGLU>(config.hidden_size, config.ffn_size, std, generator));
    }
  }

  // x (B, T, C) -> (B, T, C); an MoE block fills `stats`. With `recompute`, the attention
  // half and a dense FFN keep only their inputs and run again in backward; an MoE FFN keeps
  // its activations, since a second forward would count its tokens twice in the step's
  // global load-balancing counts.
  Tensor forward(const Tensor& x, MoeLayerStats* stats, bool recompute) const {
    auto attention_half = [this](const std::vector<Tensor>& in) -> std::vector<Tensor> {
      return {in[0] + self_attn->forward(input_layernorm->forward(in[0]))};
    };
    Tensor h = recompute ? checkpoint(attention_half, {x})[0] : attention_half({x})[0];
    if (moe) return h + moe->forward(post_attention_layernorm->forward(h), stats);
    auto dense_half = [this](const std::vector<Tensor>& in) -> std::vector<Tensor> {
      return {in[0] + dense->forward(post_attention_layernorm->forward(in[0]))};
    };
    return recompute ? checkpoint(dense_half, {h})[0] : dense_half({h})[0];
  }

  // The same for new tokens at positions position .. position + T - 1 (see forward_cached).
  Tensor forward_cached(const Tensor& x, AttentionCache& cache, int64_t position) const {
    Tensor h = x + self_attn->forward_cached(input_layernorm->forward(x), cache, position);
    Tensor normed = post_attention_layernorm->forward(h);
    MoeLayerStats stats;
    return h + (moe ? moe->forward(normed, &stats) : dense->forward(normed));
  }

  std::shared_ptr<RMSNorm> input_layernorm;
  std::shared_ptr<CausalSelfAttention> self_attn;
  std::shared_ptr<RMSNorm> post_attention_layernorm;
  std::shared_ptr<SwiGLU> dense;   // dense layers
  std::shared_ptr<MoeLayer> moe;   // MoE layers
};

namespace {

// The output projections, whose sum over 2L residual branches would otherwise grow the
// residual stream with depth (GPT-2's scaled init).
bool is_output_projection(const std::string& name) {
  return absl::EndsWith(name, "o_proj.weight") || absl::EndsWith(name, "down_proj.weight") ||
         absl::EndsWith(name, "experts.w2");
}

// Norm weights start at one; they are the only vectors among the parameters.
bool is_norm(const std::string& name) { return absl::EndsWith(name, "norm.weight"); }

}  // namespace

bool is_expert_parameter(const std::string& name) {
  return absl::EndsWith(name, ".mlp.experts.w1") || absl::EndsWith(name, ".mlp.experts.w2");
}

std::vector<ParameterShard> Transformer::parameter_shards() const {
  std::vector<ParameterShard> shards;
  if (expert_ranks_ == 1) return shards;
  for (const auto& [name, parameter] : named_parameters()) {
    if (!is_expert_parameter(name)) continue;
    ParameterShard shard{.name = name, .global_shape = parameter.shape(), .offsets = {}};
    shard.global_shape[0] = config_.moe.num_experts;
    shard.offsets.assign(parameter.dim(), 0);
    shard.offsets[0] = expert_rank_ * parameter.size(0);
    shards.push_back(std::move(shard));
  }
  return shards;
}

Transformer::Transformer(const ModelConfig& config, const MoeParallel& parallel) : config_(config) {
  absl::Status valid = config.validate();
  SY_CHECK(valid.ok(), "Transformer: invalid config: ", valid.message());
  if (parallel.expert) {
    expert_ranks_ = parallel.expert->size();
    expert_rank_ = parallel.expert->rank();
  }
  // Submodules draw from a scratch generator (their draws are replaced below), so that
  // building a model leaves the default generator alone.
  Generator scratch(config.seed);
  embed_tokens_ = register_module("embed_tokens", std::make_shared<Embedding>(config.vocab_size, config.hidden_size,
                                                                               config.init_std, &scratch));
  layers_ = register_module("layers", std::make_shared<ModuleList>());
  for (int64_t layer = 0; layer < config.num_layers; ++layer) {
    layers_->append(std::make_shared<TransformerBlock>(config, layer, &scratch, parallel));
  }
  norm_ = register_module("norm", std::make_shared<RMSNorm>(config.hidden_size, config.norm_eps));
  if (!config.tie_embeddings) {
    lm_head_ = register_module("lm_head", std::make_shared<Linear>(config.hidden_size, config.vocab_size, false,
                                                                   config.init_std, &scratch));
  }

  // One rule for every parameter, whoever built it: in name order from one seeded stream.
  // An EP rank draws every expert's values and keeps its own, so that the stream and each
  // expert match the one-rank model.
  Generator generator(config.seed);
  const double output_std = config.init_std / std::sqrt(2.0 * static_cast<double>(config.num_layers));
  NoGradGuard no_grad;
  for (auto& [name, parameter] : named_parameters()) {
    if (is_norm(name)) continue;
    const double std = is_output_projection(name) ? output_std : config.init_std;
    if (expert_ranks_ > 1 && is_expert_parameter(name)) {
      Shape global_shape = parameter.shape();
      global_shape[0] = config.moe.num_experts;
      Tensor all = Tensor::empty(global_shape, parameter.dtype(), parameter.device());
      normal_(all, 0.0, std, &generator);
      parameter.copy_(all.narrow(0, expert_rank_ * parameter.size(0), parameter.size(0)));
      continue;
    }
    normal_(parameter, 0.0, std, &generator);
  }
}

std::vector<MoeLayer*> Transformer::moe_layers() const {
  std::vector<MoeLayer*> result;
  for (int64_t layer = 0; layer < layers_->size(); ++layer) {
    if (auto& block = layers_->at<TransformerBlock>(layer); block.moe) result.push_back(block.moe.get());
  }
  return result;
}

ModelOutput Transformer::forward(const Tensor& tokens, const Tensor& targets) {
  SY_CHECK(tokens.dim() == 2 && !is_floating(tokens.dtype()), "Transformer: tokens ", ShapeString(tokens.shape()),
           ", expected integer (B, T)");
  SY_CHECK(tokens.size(1) <= config_.max_seq_len, "Transformer: T = ", tokens.size(1), " exceeds max_seq_len ",
           config_.max_seq_len);
  const int64_t B = tokens.size(0), T = tokens.size(1), V = config_.vocab_size;
  ModelOutput out;
  Tensor x = embed_tokens_->forward(tokens);  // (B, T, C)
  for (int64_t layer = 0; layer < layers_->size(); ++layer) {
    const auto& block = layers_->at<TransformerBlock>(layer);
    MoeLayerStats stats;
    x = block.forward(x, &stats, recompute_ && is_training());
    if (block.moe) out.moe_layers.push_back(std::move(stats));
  }
  x = norm_->forward(x);
  out.logits = lm_head_ ? lm_head_->forward(x) : linear(x, embed_tokens_->weight);  // (B, T, V)

  for (const MoeLayerStats& stats : out.moe_layers) {
    for (const Tensor* term : {&stats.load_balance_loss, &stats.sequence_load_balance_loss,
                               &stats.global_load_balance_loss, &stats.z_loss}) {
      if (!term->defined()) continue;
      out.aux_loss = out.aux_loss.defined() ? out.aux_loss + *term : *term;
    }
  }
  const bool has_aux = out.aux_loss.defined();
  if (!has_aux) out.aux_loss = Tensor::scalar(0.0, out.logits.dtype(), out.logits.device());

  if (targets.defined()) {
    SY_CHECK(targets.shape() == tokens.shape(), "Transformer: targets ", ShapeString(targets.shape()),
             ", expected (B, T) = ", ShapeString(tokens.shape()));
    out.lm_loss = cross_entropy(out.logits.reshape({B * T, V}), targets.reshape({B * T}));
    out.loss = has_aux ? out.lm_loss + out.aux_loss.to(out.lm_loss.dtype()) : out.lm_loss;
  }
  return out;
}

Tensor Transformer::forward_cached(const Tensor& tokens, KvCache* cache) {
  SY_CHECK(cache != nullptr, "Transformer::forward_cached: no cache");
  SY_CHECK(tokens.dim() == 2 && !is_floating(tokens.dtype()) && tokens.size(1) > 0, "Transformer: tokens ",
           ShapeString(tokens.shape()), ", expected integer (B, T) with T > 0");
  const int64_t position = cache->length, T = tokens.size(1);
  SY_CHECK(position + T <= config_.max_seq_len, "Transformer::forward_cached: ", position, " cached + ", T,
           " new tokens exceed max_seq_len ", config_.max_seq_len);
  if (cache->layers.empty()) cache->layers.resize(static_cast<size_t>(layers_->size()));
  SY_CHECK(static_cast<int64_t>(cache->layers.size()) == layers_->size(), "Transformer::forward_cached: cache of ",
           cache->layers.size(), " layers for a model of ", layers_->size());
  NoGradGuard no_grad;
  Tensor x = embed_tokens_->forward(tokens);  // (B, T, C)
  for (int64_t layer = 0; layer < layers_->size(); ++layer) {
    x = layers_->at<TransformerBlock>(layer).forward_cached(x, cache->layers[static_cast<size_t>(layer)], position);
  }
  x = norm_->forward(x);
  cache->length = position + T;
  return lm_head_ ? lm_head_->forward(x) : linear(x, embed_tokens_->weight);  // (B, T, V)
}

FlopCount count_flops(const ModelConfig& config, int64_t seq_len) {
  const int64_t C = config.hidden_size, V = config.vocab_size, D = config.head_dim();
  const int64_t attention = C * config.num_heads * D * 2 + C * config.num_kv_heads * D * 2;  // q, o; k, v
  const int64_t norms = 2 * C;
  FlopCount count;
  int64_t matmul = 0;
  for (int64_t layer = 0; layer < config.num_layers; ++layer) {
    count.total_parameters += attention + norms;
    count.active_parameters += attention + norms;
    matmul += attention;
    if (!config.is_moe_layer(layer)) {
      const int64_t ffn = 3 * C * config.ffn_size;
      count.total_parameters += ffn;
      count.active_parameters += ffn;
      matmul += ffn;
      continue;
    }
    const MoeConfig& moe = config.moe;
    const int64_t expert = 3 * C * moe.expert_ffn_size;
    const int64_t shared = moe.num_shared_experts > 0 ? 3 * C * moe.num_shared_experts * moe.shared_expert_ffn_size : 0;
    const int64_t shared_gate = moe.num_shared_experts > 0 && moe.shared_expert_gate ? C : 0;
    const int64_t always = moe.num_experts * C + shared + shared_gate;  // router, shared experts
    count.total_parameters += always + moe.num_experts * expert;
    count.active_parameters += always + moe.top_k * expert;
    matmul += always + moe.top_k * expert;
  }
  const int64_t head = config.tie_embeddings ? 0 : V * C;
  count.total_parameters += V * C + C + head;  // embedding, final norm, LM head
  count.active_parameters += V * C + C + head;
  matmul += V * C;  // the LM head multiplies also when it is the embedding
  count.matmul_parameters = matmul;
  const double attention_flops = 2.0 * 2.0 * static_cast<double>(seq_len) * static_cast<double>(C) / 2.0;
  count.forward_flops_per_token =
      2.0 * static_cast<double>(matmul) + attention_flops * static_cast<double>(config.num_layers);
  count.training_flops_per_token = 3.0 * count.forward_flops_per_token;
  return count;
}

}  // namespace sy
