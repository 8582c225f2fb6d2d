#include "moe/config.h"

#include "absl/strings/str_cat.h"

namespace sy {

bool ModelConfig::is_moe_layer(int64_t layer) const {
  return moe.num_experts > 0 && layer >= first_k_dense_layers &&
         (layer - first_k_dense_layers) % moe_layer_frequency == 0;
}

absl::Status ModelConfig::validate() const {
  auto positive = [](const char* key, int64_t value) -> absl::Status {
    if (value > 0) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat(key, " must be positive, got ", value));
  };
  for (auto [key, value] : {std::pair{"model.vocab_size", vocab_size}, {"model.hidden_size", hidden_size},
                            {"model.num_layers", num_layers}, {"model.num_heads", num_heads},
                            {"model.num_kv_heads", num_kv_heads}, {"model.ffn_size", ffn_size},
                            {"model.max_seq_len", max_seq_len}, {"model.moe_layer_frequency", moe_layer_frequency}}) {
    if (absl::Status status = positive(key, value); !status.ok()) return status;
  }
  if (hidden_size % num_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat("model.hidden_size (", hidden_size,
                                                   ") must be divisible by model.num_heads (", num_heads, ")"));
  }
  if (num_heads % num_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat("model.num_heads (", num_heads,
                                                   ") must be divisible by model.num_kv_heads (", num_kv_heads, ")"));
  }
  if (head_dim() % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat("head dim hidden_size / num_heads = ", head_dim(),
                                                   " must be even for rotary embeddings"));
  }
  if (init_std <= 0) return absl::InvalidArgumentError(absl::StrCat("model.init_std must be > 0, got ", init_std));
  if (first_k_dense_layers < 0) {
    return absl::InvalidArgumentError(absl::StrCat("model.first_k_dense_layers must be >= 0, got ", first_k_dense_layers));
  }
  if (moe.num_experts == 0) return absl::OkStatus();
  if (moe.num_experts < 0) return absl::InvalidArgumentError(absl::StrCat("moe.num_experts must be >= 0, got ", moe.num_experts));
  if (moe.top_k < 1 || moe.top_k > moe.num_experts) {
    return absl::InvalidArgumentError(absl::StrCat("moe.top_k (", moe.top_k, ") must be in [1, moe.num_experts = ",
                                                   moe.num_experts, "]"));
  }
  if (absl::Status status = positive("moe.expert_ffn_size", moe.expert_ffn_size); !status.ok()) return status;
  if (moe.num_shared_experts < 0) {
    return absl::InvalidArgumentError(absl::StrCat("moe.num_shared_experts must be >= 0, got ", moe.num_shared_experts));
  }
  if (moe.num_shared_experts > 0) {
    if (absl::Status status = positive("moe.shared_expert_ffn_size", moe.shared_expert_ffn_size); !status.ok()) {
      return status;
    }
  }
  if (moe.num_groups < 1 || moe.num_experts % moe.num_groups != 0) {
    return absl::InvalidArgumentError(absl::StrCat("moe.num_groups (", moe.num_groups,
                                                   ") must divide moe.num_experts (", moe.num_experts, ")"));
  }
  if (moe.group_topk < 1 || moe.group_topk > moe.num_groups) {
    return absl::InvalidArgumentError(absl::StrCat("moe.group_topk (", moe.group_topk, ") must be in [1, moe.num_groups = ",
                                                   moe.num_groups, "]"));
  }
  if (moe.top_k > moe.group_topk * (moe.num_experts / moe.num_groups)) {
    return absl::InvalidArgumentError(absl::StrCat("moe.top_k (", moe.top_k, ") exceeds the experts in the ",
                                                   moe.group_topk, " selected groups (",
                                                   moe.group_topk * (moe.num_experts / moe.num_groups), ")"));
  }
  if (moe.score_function == ScoreFunction::kSigmoid && !moe.renormalize) {
    return absl::InvalidArgumentError("moe.score_function sigmoid requires moe.renormalize: true");
  }
  if (moe.capacity_factor < 0) {
    return absl::InvalidArgumentError(absl::StrCat("moe.capacity_factor must be >= 0 (0: dropless), got ", moe.capacity_factor));
  }
  if (moe.pad_to_capacity && moe.capacity_factor == 0) {
    return absl::InvalidArgumentError("moe.pad_to_capacity needs moe.capacity_factor > 0");
  }
  for (auto [key, value] : {std::pair{"moe.load_balance_coeff", moe.load_balance_coeff},
                            {"moe.sequence_load_balance_coeff", moe.sequence_load_balance_coeff},
                            {"moe.global_load_balance_coeff", moe.global_load_balance_coeff},
                            {"moe.z_loss_coeff", moe.z_loss_coeff}, {"moe.input_jitter", moe.input_jitter},
                            {"moe.bias_update_rate", moe.bias_update_rate}}) {
    if (value < 0) return absl::InvalidArgumentError(absl::StrCat(key, " must be >= 0, got ", value));
  }
  return absl::OkStatus();
}

}  // namespace sy
