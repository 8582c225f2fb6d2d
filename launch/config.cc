// Reading the run configuration from YAML: one table of keys drives parsing, config_to_yaml,
// the closest-key suggestion and the reference in configs/README.md (a test compares them).
// Files apply in order (bases first), each key overriding the struct field it names, so every
// field remembers the file and line that set it last; validation errors point there.
#include "launch/config.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <tuple>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "yaml-cpp/yaml.h"

namespace sy {

int64_t TrainConfig::gradient_accumulation_steps() const {
  return training.global_batch_size / (training.micro_batch_size * parallel.data);
}

namespace {

namespace fs = std::filesystem;

// Where values come from: a file (messages give its name and the line) or one --set.
struct Place {
  std::string where;  // "configs/quickstart.yaml" or "--set training.steps=abc"
  fs::path dir;       // relative paths resolve against it; empty keeps them as written
  bool has_lines = true;
  int key_line = 0;   // 1-based line of the key being read, for values without a mark
};

int line_of(const Place& place, const YAML::Node& node) {
  if (!place.has_lines) return 0;
  const YAML::Mark mark = node.Mark();
  return mark.is_null() ? place.key_line : mark.line + 1;
}

std::string location(const Place& place, int line) {
  return line > 0 ? absl::StrCat(place.where, ":", line) : place.where;
}

absl::Status error_at(const Place& place, const YAML::Node& node, absl::string_view key, absl::string_view text) {
  return absl::InvalidArgumentError(absl::StrCat(location(place, line_of(place, node)), ": ", key, ": ", text));
}

std::string describe_node(const YAML::Node& node) {
  if (node.IsNull()) return "nothing";
  if (node.IsSequence()) return "a list";
  if (node.IsMap()) return "a map";
  return absl::StrCat("'", node.Scalar(), "'");
}

// Levenshtein distance, for "did you mean".
size_t edit_distance(absl::string_view a, absl::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::string leaf(absl::string_view name) {
  const size_t dot = name.rfind('.');
  return std::string(dot == absl::string_view::npos ? name : name.substr(dot + 1));
}

// The closest of `candidates` to `name` (comparing whole names, and leaf names so that a key
// put in the wrong section is found), or "" when none is close.
std::string closest(absl::string_view name, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_distance = std::max<size_t>(2, name.size() / 3) + 1;
  for (const std::string& candidate : candidates) {
    size_t distance = edit_distance(name, candidate);
    if (leaf(name) != std::string(name)) distance = std::min(distance, edit_distance(leaf(name), leaf(candidate)) + 1);
    if (distance < best_distance) {
      best_distance = distance;
      best = candidate;
    }
  }
  return best;
}

// The shortest text that reads back to the same double, exponent without padding ("3e-4").
std::string format_double(double value) {
  char buffer[64];
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof(buffer), value);
  std::string text(buffer, end);
  if (const size_t e = text.find('e'); e != std::string::npos) {
    std::string exponent = text.substr(e + 1);
    const bool negative = exponent[0] == '-';
    exponent.erase(0, exponent.find_first_not_of("+-0"));
    text = absl::StrCat(text.substr(0, e + 1), negative ? "-" : "", exponent);
  }
  return text;
}

std::string quote(absl::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof(escaped), "\\x%02x", static_cast<unsigned char>(c));
      out += escaped;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

// A path as the file at `place` means it: relative ones against the file's folder.
std::string resolve_path(const Place& place, const std::string& path) {
  if (path.empty() || place.dir.empty() || fs::path(path).is_absolute()) return path;
  return (place.dir / path).lexically_normal().string();
}

template <typename T>
using Field = T& (*)(TrainConfig&);
// Reading through a Field: the table holds mutable accessors only, and writing never modifies.
template <typename T>
const T& get(Field<T> field, const TrainConfig& config) {
  return field(const_cast<TrainConfig&>(config));
}
// A field of TrainConfig; `+` turns the capture-less lambda into a function pointer.
#define SY_FIELD(member) +[](TrainConfig& c) -> auto& { return c.member; }

using Reader = std::function<absl::Status(TrainConfig&, const YAML::Node&, const Place&)>;
using Writer = std::function<std::string(const TrainConfig&)>;

struct Key {
  std::string name;  // section.key
  std::string type;  // for the reference
  std::string doc;
  Reader read;
  Writer write;       // YAML text of the value; null for an alias
  std::string field;  // the key whose field this one sets (an alias names its target)
};

// A key whose value is one scalar: `parse` returns nullopt for text that is not a T.
template <typename T>
Key scalar_key(std::string name, std::string type, std::string expected, Field<T> field,
               std::function<std::optional<T>(const std::string&, const Place&)> parse,
               std::function<std::string(const T&)> format, std::string doc) {
  Reader read = [name, expected, field, parse](TrainConfig& config, const YAML::Node& node,
                                               const Place& place) -> absl::Status {
    std::optional<T> value;
    if (node.IsScalar()) value = parse(node.Scalar(), place);
    if (!value) return error_at(place, node, name, absl::StrCat("expected ", expected, ", got ", describe_node(node)));
    field(config) = *value;
    return absl::OkStatus();
  };
  Writer write = [field, format](const TrainConfig& config) { return format(get(field, config)); };
  return Key{name, std::move(type), std::move(doc), std::move(read), std::move(write), name};
}

Key integer_key(std::string name, Field<int64_t> field, std::string doc) {
  return scalar_key<int64_t>(
      name, "integer", "an integer", field,
      [](const std::string& text, const Place&) -> std::optional<int64_t> {
        int64_t value = 0;
        return absl::SimpleAtoi(text, &value) ? std::optional(value) : std::nullopt;
      },
      [](const int64_t& value) { return absl::StrCat(value); }, std::move(doc));
}

Key seed_key(std::string name, Field<uint64_t> field, std::string doc) {
  return scalar_key<uint64_t>(
      name, "integer >= 0", "a non-negative integer", field,
      [](const std::string& text, const Place&) -> std::optional<uint64_t> {
        uint64_t value = 0;
        return absl::SimpleAtoi(text, &value) ? std::optional(value) : std::nullopt;
      },
      [](const uint64_t& value) { return absl::StrCat(value); }, std::move(doc));
}

Key number_key(std::string name, Field<double> field, std::string doc) {
  return scalar_key<double>(
      name, "number", "a number", field,
      [](const std::string& text, const Place&) -> std::optional<double> {
        double value = 0;
        return absl::SimpleAtod(text, &value) && std::isfinite(value) ? std::optional(value) : std::nullopt;
      },
      format_double, std::move(doc));
}

Key bool_key(std::string name, Field<bool> field, std::string doc) {
  return scalar_key<bool>(
      name, "bool", "true or false", field,
      [](const std::string& text, const Place&) -> std::optional<bool> {
        const std::string lower = absl::AsciiStrToLower(text);
        if (lower == "true") return true;
        if (lower == "false") return false;
        return std::nullopt;
      },
      [](const bool& value) { return std::string(value ? "true" : "false"); }, std::move(doc));
}

// A string; an empty value (`key:` or `key: ~`) is the empty string.
Key string_key(std::string name, Field<std::string> field, std::string doc, bool is_path = false) {
  Key key = scalar_key<std::string>(
      name, is_path ? "path" : "string", "a string", field,
      [is_path](const std::string& text, const Place& place) -> std::optional<std::string> {
        return is_path ? resolve_path(place, text) : text;
      },
      [](const std::string& value) { return quote(value); }, std::move(doc));
  Reader scalar_read = std::move(key.read);
  key.read = [field, scalar_read](TrainConfig& config, const YAML::Node& node, const Place& place) {
    if (!node.IsNull()) return scalar_read(config, node, place);
    field(config).clear();
    return absl::OkStatus();
  };
  return key;
}

Key path_key(std::string name, Field<std::string> field, std::string doc) {
  return string_key(std::move(name), field, std::move(doc), /*is_path=*/true);
}

// A string field restricted to `choices` (the struct keeps a string; the key checks early).
Key choice_key(std::string name, Field<std::string> field, std::vector<std::string> choices, std::string doc) {
  return scalar_key<std::string>(
      name, absl::StrJoin(choices, " / "), absl::StrCat("one of ", absl::StrJoin(choices, ", ")), field,
      [choices](const std::string& text, const Place&) -> std::optional<std::string> {
        if (std::find(choices.begin(), choices.end(), text) == choices.end()) return std::nullopt;
        return text;
      },
      [](const std::string& value) { return value; }, std::move(doc));
}

template <typename E>
Key enum_key(std::string name, Field<E> field, std::vector<std::pair<E, std::string>> names, std::string doc) {
  std::vector<std::string> words;
  for (const auto& [value, word] : names) words.push_back(word);
  return scalar_key<E>(
      name, absl::StrJoin(words, " / "), absl::StrCat("one of ", absl::StrJoin(words, ", ")), field,
      [names](const std::string& text, const Place&) -> std::optional<E> {
        for (const auto& [value, word] : names) {
          if (word == text) return value;
        }
        return std::nullopt;
      },
      [names](const E& value) {
        for (const auto& [candidate, word] : names) {
          if (candidate == value) return word;
        }
        return std::string("?");
      },
      std::move(doc));
}

// data.sources: a list of {prefix: PATH, weight: W}.
Key sources_key(std::string doc) {
  const std::string name = "data.sources";
  Reader read = [name](TrainConfig& config, const YAML::Node& node, const Place& place) -> absl::Status {
    if (!node.IsSequence()) {
      return error_at(place, node, name, absl::StrCat("expected a list of {prefix, weight}, got ", describe_node(node)));
    }
    std::vector<DataSource> sources;
    for (size_t i = 0; i < node.size(); ++i) {
      const YAML::Node entry = node[i];
      const std::string entry_name = absl::StrCat(name, "[", i, "]");
      if (!entry.IsMap()) {
        return error_at(place, entry, entry_name, absl::StrCat("expected a map {prefix, weight}, got ", describe_node(entry)));
      }
      DataSource source;
      bool has_prefix = false;
      for (const auto& item : entry) {
        const std::string key = item.first.Scalar();
        const std::string full = absl::StrCat(entry_name, ".", key);
        if (key == "prefix") {
          if (!item.second.IsScalar()) {
            return error_at(place, item.second, full, absl::StrCat("expected a path, got ", describe_node(item.second)));
          }
          source.prefix = resolve_path(place, item.second.Scalar());
          has_prefix = true;
        } else if (key == "weight") {
          double weight = 0;
          if (!item.second.IsScalar() || !absl::SimpleAtod(item.second.Scalar(), &weight) || !std::isfinite(weight)) {
            return error_at(place, item.second, full, absl::StrCat("expected a number, got ", describe_node(item.second)));
          }
          source.weight = weight;
        } else {
          const std::string suggestion = closest(key, {"prefix", "weight"});
          return error_at(place, item.first, full,
                          absl::StrCat("unknown key (a source has prefix and weight",
                                       suggestion.empty() ? "" : absl::StrCat("; did you mean ", suggestion, "?"), ")"));
        }
      }
      if (!has_prefix) return error_at(place, entry, entry_name, "missing prefix");
      sources.push_back(std::move(source));
    }
    config.data.sources = std::move(sources);
    return absl::OkStatus();
  };
  Writer write = [](const TrainConfig& config) {
    if (config.data.sources.empty()) return std::string("[]");
    std::string out;
    for (const DataSource& source : config.data.sources) {
      absl::StrAppend(&out, "\n    - {prefix: ", quote(source.prefix), ", weight: ", format_double(source.weight), "}");
    }
    return out;
  };
  return Key{name, "list of {prefix, weight}", std::move(doc), std::move(read), std::move(write), name};
}

// data.prefix: one source of weight 1, the shorthand for data.sources (read only: config_to_yaml
// writes data.sources).
Key prefix_alias_key(std::string doc) {
  Reader read = [](TrainConfig& config, const YAML::Node& node, const Place& place) -> absl::Status {
    if (!node.IsScalar()) return error_at(place, node, "data.prefix", absl::StrCat("expected a path, got ", describe_node(node)));
    config.data.sources = {DataSource{.prefix = resolve_path(place, node.Scalar()), .weight = 1.0}};
    return absl::OkStatus();
  };
  return Key{"data.prefix", "path", std::move(doc), std::move(read), nullptr, "data.sources"};
}

const std::vector<std::string>& section_names() {
  static const std::vector<std::string> names = {"model",    "moe",      "data",       "optimizer", "schedule",
                                                 "training", "parallel", "checkpoint", "logging"};
  return names;
}

// The table. Its order is the order of config_to_yaml and of configs/README.md.
const std::vector<Key>& keys() {
  static const std::vector<Key> table = [] {
    std::vector<Key> k;
    // model
    k.push_back(integer_key("model.vocab_size", SY_FIELD(model.vocab_size),
                            "V: vocabulary size; at least the tokenizer's (checked when training starts)"));
    k.push_back(integer_key("model.hidden_size", SY_FIELD(model.hidden_size), "C: model width"));
    k.push_back(integer_key("model.num_layers", SY_FIELD(model.num_layers), "L: transformer blocks"));
    k.push_back(integer_key("model.num_heads", SY_FIELD(model.num_heads),
                            "H: attention heads; divides hidden_size, and the head width C / H is even (rotary)"));
    k.push_back(integer_key("model.num_kv_heads", SY_FIELD(model.num_kv_heads),
                            "key/value heads, dividing num_heads (grouped-query attention when fewer)"));
    k.push_back(integer_key("model.ffn_size", SY_FIELD(model.ffn_size), "SwiGLU width of the dense layers"));
    k.push_back(integer_key("model.max_seq_len", SY_FIELD(model.max_seq_len),
                            "longest sequence the rotary tables cover; at least data.seq_length"));
    k.push_back(number_key("model.rope_theta", SY_FIELD(model.rope_theta), "rotary embedding base"));
    k.push_back(number_key("model.norm_eps", SY_FIELD(model.norm_eps), "RMSNorm epsilon"));
    k.push_back(bool_key("model.tie_embeddings", SY_FIELD(model.tie_embeddings),
                         "the LM head reuses the token embedding matrix"));
    k.push_back(number_key("model.init_std", SY_FIELD(model.init_std),
                           "std of the normal weight init; output projections use init_std / sqrt(2 L)"));
    k.push_back(seed_key("model.seed", SY_FIELD(model.seed), "seed of the weight initialization"));
    k.push_back(integer_key("model.first_k_dense_layers", SY_FIELD(model.first_k_dense_layers),
                            "the first layers stay dense (DeepSeek first_k_dense_replace)"));
    k.push_back(integer_key("model.moe_layer_frequency", SY_FIELD(model.moe_layer_frequency),
                            "after those, every N-th layer is MoE (1: all of them)"));
    // moe (ModelConfig::moe)
    k.push_back(integer_key("moe.num_experts", SY_FIELD(model.moe.num_experts),
                            "E: routed experts per MoE layer; 0 makes every layer dense"));
    k.push_back(integer_key("moe.top_k", SY_FIELD(model.moe.top_k), "K: routed experts per token, at most num_experts"));
    k.push_back(integer_key("moe.expert_ffn_size", SY_FIELD(model.moe.expert_ffn_size),
                            "F: SwiGLU width of each routed expert (fine-grained: much less than a dense FFN)"));
    k.push_back(integer_key("moe.num_shared_experts", SY_FIELD(model.moe.num_shared_experts),
                            "experts every token passes through, besides the routed ones"));
    k.push_back(integer_key("moe.shared_expert_ffn_size", SY_FIELD(model.moe.shared_expert_ffn_size),
                            "width of each shared expert; the shared FFN is num_shared_experts times as wide"));
    k.push_back(bool_key("moe.shared_expert_gate", SY_FIELD(model.moe.shared_expert_gate),
                         "Qwen2-MoE: sigmoid(x . w) scales the shared experts' output"));
    k.push_back(enum_key<ScoreFunction>("moe.score_function", SY_FIELD(model.moe.score_function),
                                        {{ScoreFunction::kSoftmax, "softmax"}, {ScoreFunction::kSigmoid, "sigmoid"}},
                                        "router scores (sigmoid needs renormalize: true)"));
    k.push_back(bool_key("moe.pre_softmax", SY_FIELD(model.moe.pre_softmax),
                         "softmax over all experts, then top-k (DeepSeek, Qwen); false: top-k of the logits, "
                         "softmax over the K (Mixtral); ignored for sigmoid"));
    k.push_back(bool_key("moe.renormalize", SY_FIELD(model.moe.renormalize),
                         "divide the top-k weights by their sum"));
    k.push_back(number_key("moe.routing_scale", SY_FIELD(model.moe.routing_scale),
                           "multiplies the routing weights (DeepSeek routed_scaling_factor)"));
    k.push_back(integer_key("moe.num_groups", SY_FIELD(model.moe.num_groups),
                            "group-limited routing: the experts split into this many groups, dividing num_experts"));
    k.push_back(integer_key("moe.group_topk", SY_FIELD(model.moe.group_topk),
                            "groups a token may use, the best by the sum of their top-2 scores"));
    k.push_back(bool_key("moe.expert_bias", SY_FIELD(model.moe.expert_bias),
                         "aux-loss-free balancing: a per-expert bias added to the scores for selection only"));
    k.push_back(number_key("moe.bias_update_rate", SY_FIELD(model.moe.bias_update_rate),
                           "after each step bias_i += rate * sign(mean load - load_i)"));
    k.push_back(number_key("moe.input_jitter", SY_FIELD(model.moe.input_jitter),
                           "multiplicative U[1 - eps, 1 + eps] noise on the router input in training; 0: off"));
    k.push_back(number_key("moe.load_balance_coeff", SY_FIELD(model.moe.load_balance_coeff),
                           "load-balancing loss over each micro-batch; 0: off"));
    k.push_back(number_key("moe.sequence_load_balance_coeff", SY_FIELD(model.moe.sequence_load_balance_coeff),
                           "load-balancing loss per sequence (DeepSeek-V2); 0: off"));
    k.push_back(number_key("moe.global_load_balance_coeff", SY_FIELD(model.moe.global_load_balance_coeff),
                           "load-balancing loss with expert counts summed over every micro-batch of the step; 0: off"));
    k.push_back(number_key("moe.z_loss_coeff", SY_FIELD(model.moe.z_loss_coeff), "router z-loss; 0: off"));
    k.push_back(number_key("moe.capacity_factor", SY_FIELD(model.moe.capacity_factor),
                           "0: dropless; else each expert takes at most ceil(tokens * K / E * factor) tokens"));
    k.push_back(enum_key<DropPolicy>("moe.drop_policy", SY_FIELD(model.moe.drop_policy),
                                     {{DropPolicy::kProbs, "probs"}, {DropPolicy::kPosition, "position"}},
                                     "over capacity, drop the lowest routing weights (probs) or the latest tokens"));
    k.push_back(bool_key("moe.pad_to_capacity", SY_FIELD(model.moe.pad_to_capacity),
                         "pad every expert's rows to its capacity (needs capacity_factor > 0)"));
    // data
    k.push_back(path_key("data.tokenizer", SY_FIELD(data.tokenizer), "directory holding encoder.json and vocab.bpe"));
    k.push_back(sources_key("indexed datasets (prefix.bin + prefix.idx) blended by weight (weights are normalized)"));
    k.push_back(prefix_alias_key("shorthand for one source: `data.prefix: P` is `data.sources: [{prefix: P, weight: 1}]`"));
    k.push_back(string_key("data.split", SY_FIELD(data.split), "train,valid,test weights of the documents (Megatron's form: up to three, split by , or /, missing ones 0)"));
    k.push_back(integer_key("data.seq_length", SY_FIELD(data.seq_length), "T: tokens per sample (a sample reads T + 1)"));
    k.push_back(seed_key("data.seed", SY_FIELD(data.seed), "seed of the per-epoch document shuffle"));
    k.push_back(path_key("data.cache_dir", SY_FIELD(data.cache_dir), "sample index cache; empty: next to each dataset"));
    // optimizer
    k.push_back(enum_key<OptimizerType>("optimizer.type", SY_FIELD(optimizer.type),
                                        {{OptimizerType::kAdamW, "adamw"}, {OptimizerType::kSgd, "sgd"}},
                                        "AdamW (decoupled weight decay) or SGD with momentum"));
    k.push_back(number_key("optimizer.lr", SY_FIELD(optimizer.lr), "peak learning rate; the schedule scales it"));
    k.push_back(number_key("optimizer.min_lr_ratio", SY_FIELD(optimizer.min_lr_ratio),
                           "the schedule's floor as a fraction of lr, in [0, 1]"));
    k.push_back(number_key("optimizer.weight_decay", SY_FIELD(optimizer.weight_decay),
                           "decoupled for AdamW, L2 for SGD; never on norms and biases"));
    k.push_back(number_key("optimizer.beta1", SY_FIELD(optimizer.beta1), "AdamW first-moment decay, in [0, 1)"));
    k.push_back(number_key("optimizer.beta2", SY_FIELD(optimizer.beta2), "AdamW second-moment decay, in [0, 1)"));
    k.push_back(number_key("optimizer.eps", SY_FIELD(optimizer.eps), "AdamW denominator epsilon"));
    k.push_back(number_key("optimizer.momentum", SY_FIELD(optimizer.momentum), "SGD momentum, in [0, 1)"));
    k.push_back(number_key("optimizer.grad_clip", SY_FIELD(optimizer.grad_clip),
                           "largest global gradient norm; 0 disables clipping"));
    // schedule
    k.push_back(enum_key<ScheduleType>("schedule.type", SY_FIELD(schedule.type),
                                       {{ScheduleType::kCosine, "cosine"}, {ScheduleType::kWsd, "wsd"},
                                        {ScheduleType::kConstant, "constant"}},
                                       "after warmup: cosine decay to the floor, warmup-stable-decay, or constant"));
    k.push_back(integer_key("schedule.warmup_steps", SY_FIELD(schedule.warmup_steps),
                            "linear warmup: lr * (step + 1) / warmup_steps"));
    k.push_back(number_key("schedule.decay_fraction", SY_FIELD(schedule.decay_fraction),
                           "WSD: the last fraction of the steps decays linearly to the floor"));
    // training
    k.push_back(integer_key("training.micro_batch_size", SY_FIELD(training.micro_batch_size),
                            "B: sequences per forward/backward"));
    k.push_back(integer_key("training.global_batch_size", SY_FIELD(training.global_batch_size),
                            "sequences per optimizer step, a multiple of micro_batch_size * parallel.data "
                            "(the rest is gradient accumulation)"));
    k.push_back(integer_key("training.steps", SY_FIELD(training.steps), "optimizer steps"));
    k.push_back(integer_key("training.skip_samples", SY_FIELD(training.skip_samples),
                            "training samples passed over before the first step: the run reads global samples "
                            "skip_samples, skip_samples + 1, ... (e.g. those after a dense run's, when continuing an "
                            "upcycled model)"));
    k.push_back(integer_key("training.eval_interval", SY_FIELD(training.eval_interval),
                            "validation every N steps; 0: only at the end"));
    k.push_back(integer_key("training.eval_batches", SY_FIELD(training.eval_batches),
                            "micro-batches per validation; 0: no validation"));
    k.push_back(integer_key("training.log_interval", SY_FIELD(training.log_interval), "metrics every N steps"));
    k.push_back(string_key("training.output_dir", SY_FIELD(training.output_dir),
                           "checkpoints/, metrics.jsonl and tensorboard/ go here (relative: to the current directory)"));
    k.push_back(choice_key("training.device", SY_FIELD(training.device), {"cpu", "cuda"}, "where the model runs"));
    k.push_back(bool_key("training.recompute", SY_FIELD(training.recompute),
                         "recompute the attention half of each block and dense FFNs in the backward (MoE FFNs keep "
                         "their activations)"));
    k.push_back(number_key("training.peak_flops", SY_FIELD(training.peak_flops),
                           "peak FLOP/s per process for MFU; 0: the measured sgemm peak"));
    k.push_back(seed_key("training.seed", SY_FIELD(training.seed), "seed of dropout and router jitter"));
    // parallel
    k.push_back(integer_key("parallel.tensor", SY_FIELD(parallel.tensor), "tensor-parallel size (not built yet: 1)"));
    k.push_back(integer_key("parallel.context", SY_FIELD(parallel.context), "context-parallel size (not built yet: 1)"));
    k.push_back(integer_key("parallel.data", SY_FIELD(parallel.data), "data-parallel size"));
    k.push_back(integer_key("parallel.pipeline", SY_FIELD(parallel.pipeline), "pipeline stages (not built yet: 1)"));
    k.push_back(integer_key("parallel.expert", SY_FIELD(parallel.expert), "expert-parallel size, dividing moe.num_experts"));
    k.push_back(integer_key("parallel.expert_tensor", SY_FIELD(parallel.expert_tensor),
                            "tensor-parallel size inside experts (not built yet: 1)"));
    k.push_back(number_key("parallel.collective_timeout_s", SY_FIELD(parallel.collective_timeout_s),
                           "seconds before a stuck collective aborts the run"));
    k.push_back(integer_key("parallel.overlap_chunks", SY_FIELD(parallel.overlap_chunks),
                            "expert-parallel dispatcher: each rank's tokens go in this many chunks, one chunk's "
                            "all-to-all overlapping another's experts (1: no overlap)"));
    k.push_back(number_key("parallel.grad_bucket_mb", SY_FIELD(parallel.grad_bucket_mb),
                           "data-parallel gradient bucket size in MiB; a bucket's reduction starts during backward "
                           "as soon as its last gradient is ready"));
    // checkpoint
    k.push_back(integer_key("checkpoint.interval", SY_FIELD(checkpoint.interval),
                            "save every N steps; 0: only at the end and on SIGINT/SIGTERM"));
    k.push_back(integer_key("checkpoint.keep_last_n", SY_FIELD(checkpoint.keep_last_n),
                            "older step directories are deleted; 0: keep all"));
    k.push_back(path_key("checkpoint.load", SY_FIELD(checkpoint.load),
                         "initial weights from a checkpoint (a run's checkpoints/ or one step), fresh optimizer, step 0 (e.g. an upcycled model); empty: random init"));
    // logging
    k.push_back(bool_key("logging.tensorboard", SY_FIELD(logging.tensorboard), "TensorBoard event files in tensorboard/"));
    k.push_back(bool_key("logging.jsonl", SY_FIELD(logging.jsonl), "one JSON line per step in metrics.jsonl"));
    k.push_back(choice_key("logging.progress", SY_FIELD(logging.progress), {"auto", "lines", "none"},
                           "console: a live line on a terminal and lines otherwise (auto), always lines, or nothing"));
    return k;
  }();
  return table;
}

#undef SY_FIELD

const Key* find_key(absl::string_view name) {
  static const std::map<std::string, const Key*, std::less<>> by_name = [] {
    std::map<std::string, const Key*, std::less<>> map;
    for (const Key& key : keys()) map.emplace(key.name, &key);
    return map;
  }();
  auto it = by_name.find(name);
  return it == by_name.end() ? nullptr : it->second;
}

std::string did_you_mean(absl::string_view name) {
  std::vector<std::string> names;
  for (const Key& key : keys()) names.push_back(key.name);
  const std::string suggestion = closest(name, names);
  return suggestion.empty() ? " (configs/README.md lists every key)" : absl::StrCat(" (did you mean ", suggestion, "?)");
}

// Applies files and overrides to one TrainConfig, remembering where each field was set.
class Loader {
 public:
  // Reads and applies the file at `path`; `shown` names it in messages.
  absl::Status apply_file(const fs::path& path, const std::string& shown, std::vector<std::string>* stack) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      return absl::NotFoundError(absl::StrCat("cannot read config file '", shown, "': ", std::strerror(errno)));
    }
    std::stringstream text;
    text << in.rdbuf();
    fs::path dir = path.parent_path();
    if (dir.empty()) dir = ".";
    return apply_text(text.str(), shown, identity(path), dir, stack);
  }

  static std::string identity(const fs::path& path) {
    std::error_code ignored;
    return fs::weakly_canonical(path, ignored).string();
  }

  // `identity` detects include cycles (a file's canonical path).
  absl::Status apply_text(const std::string& text, const std::string& shown, const std::string& identity,
                          const fs::path& dir, std::vector<std::string>* stack) {
    YAML::Node root;
    try {
      root = YAML::Load(text);
    } catch (const YAML::Exception& e) {
      return absl::InvalidArgumentError(
          absl::StrCat(shown, ":", e.mark.line + 1, ":", e.mark.column + 1, ": invalid YAML: ", e.msg));
    }
    if (root.IsNull()) return absl::OkStatus();
    Place place{.where = shown, .dir = dir == "." ? fs::path() : dir};
    if (!root.IsMap()) {
      return absl::InvalidArgumentError(absl::StrCat(shown, ": expected a map of sections (model:, data:, ...), got ",
                                                     describe_node(root)));
    }
    stack->push_back(identity);
    names_.push_back(shown);
    absl::Status status;
    try {
      status = apply_map(root, place, stack);
    } catch (const YAML::Exception& e) {  // a malformed node the checks above did not foresee
      status = absl::InvalidArgumentError(absl::StrCat(shown, ":", e.mark.line + 1, ": ", e.msg));
    }
    stack->pop_back();
    names_.pop_back();
    return status;
  }

  // "key.path=value", the value read as YAML; paths stay relative to the current directory.
  absl::Status apply_override(const std::string& assignment) {
    const Place place{.where = absl::StrCat("--set ", assignment), .has_lines = false};
    const size_t equals = assignment.find('=');
    if (equals == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(place.where, ": expected key.path=value"));
    }
    const std::string name(absl::StripAsciiWhitespace(assignment.substr(0, equals)));
    const Key* key = find_key(name);
    if (key == nullptr) return absl::InvalidArgumentError(absl::StrCat(place.where, ": unknown key '", name, "'", did_you_mean(name)));
    YAML::Node value;
    try {
      value = YAML::Load(assignment.substr(equals + 1));
    } catch (const YAML::Exception& e) {
      return absl::InvalidArgumentError(absl::StrCat(place.where, ": ", name, ": invalid YAML value: ", e.msg));
    }
    if (absl::Status status = key->read(config_, value, place); !status.ok()) return status;
    remember(key->field, place.where);
    return absl::OkStatus();
  }

  // Validates, pointing at the file and line of the latest setting among the keys the message
  // names (an override or an including file is likelier to be the mistake than its base).
  absl::Status validate(const std::string& top_name) const {
    absl::Status status = validate_config(config_);
    if (status.ok()) return status;
    const absl::string_view message = status.message();
    int64_t latest = -1;
    std::string origin;
    for (const auto& [name, set_at] : origins_) {
      for (size_t position = message.find(name); position != absl::string_view::npos;
           position = message.find(name, position + 1)) {
        // A whole key: "data.sources[0]" names data.sources, "moe.top_k" does not name "moe.top".
        const size_t end = position + name.size();
        const bool starts = position == 0 || !(absl::ascii_isalnum(message[position - 1]) ||
                                               message[position - 1] == '_' || message[position - 1] == '.');
        const bool ends = end == message.size() || !(absl::ascii_isalnum(message[end]) || message[end] == '_');
        if (!starts || !ends) continue;
        if (set_at.order > latest) {
          latest = set_at.order;
          origin = set_at.where;
        }
        break;
      }
    }
    if (origin.empty()) origin = top_name;
    return absl::Status(status.code(), absl::StrCat(origin, ": ", message));
  }

  TrainConfig& config() { return config_; }

 private:
  absl::Status apply_map(const YAML::Node& root, Place place, std::vector<std::string>* stack) {
    // Bases first, whatever their position in the file.
    for (const auto& item : root) {
      if (item.first.Scalar() != "include") continue;
      place.key_line = line_of(place, item.first);
      std::vector<YAML::Node> includes;
      if (item.second.IsScalar()) {
        includes.push_back(item.second);
      } else if (item.second.IsSequence()) {
        for (const YAML::Node& entry : item.second) includes.push_back(entry);
      }
      if (includes.empty()) {
        return error_at(place, item.second, "include", absl::StrCat("expected a file or a list of files, got ",
                                                                    describe_node(item.second)));
      }
      for (const YAML::Node& include : includes) {
        if (!include.IsScalar()) {
          return error_at(place, include, "include", absl::StrCat("expected a file, got ", describe_node(include)));
        }
        const fs::path base = fs::path(include.Scalar()).is_absolute() || place.dir.empty()
                                  ? fs::path(include.Scalar())
                                  : (place.dir / include.Scalar()).lexically_normal();
        if (std::find(stack->begin(), stack->end(), identity(base)) != stack->end()) {
          return error_at(place, include, "include",
                          absl::StrCat("cycle: ", absl::StrJoin(names_, " -> "), " -> ", base.string()));
        }
        absl::Status status = apply_file(base, base.string(), stack);
        if (absl::IsNotFound(status)) return error_at(place, include, "include", status.message());
        if (!status.ok()) return status;
      }
    }
    std::map<std::string, int> seen;  // field -> line, for duplicates within this file
    for (const auto& section : root) {
      const std::string section_name = section.first.Scalar();
      if (section_name == "include") continue;
      place.key_line = line_of(place, section.first);
      if (std::find(section_names().begin(), section_names().end(), section_name) == section_names().end()) {
        const std::string suggestion = closest(section_name, section_names());
        return absl::InvalidArgumentError(absl::StrCat(
            location(place, place.key_line), ": unknown section '", section_name, "'",
            suggestion.empty() ? absl::StrCat(" (expected one of ", absl::StrJoin(section_names(), ", "), ")")
                               : absl::StrCat(" (did you mean ", suggestion, "?)")));
      }
      if (section.second.IsNull()) continue;  // an empty section
      if (!section.second.IsMap()) {
        return error_at(place, section.second, section_name,
                        absl::StrCat("expected a map of keys, got ", describe_node(section.second)));
      }
      for (const auto& item : section.second) {
        const std::string name = absl::StrCat(section_name, ".", item.first.Scalar());
        place.key_line = line_of(place, item.first);
        const Key* key = find_key(name);
        if (key == nullptr) {
          return absl::InvalidArgumentError(
              absl::StrCat(location(place, place.key_line), ": unknown key '", name, "'", did_you_mean(name)));
        }
        if (auto [it, inserted] = seen.emplace(key->field, place.key_line); !inserted) {
          return absl::InvalidArgumentError(absl::StrCat(location(place, place.key_line), ": ", name, ": ",
                                                         key->field == name ? "" : absl::StrCat("sets ", key->field, ", "),
                                                         "already set at line ", it->second));
        }
        if (absl::Status status = key->read(config_, item.second, place); !status.ok()) return status;
        remember(key->field, location(place, place.key_line));
      }
    }
    return absl::OkStatus();
  }

  void remember(const std::string& field, std::string where) {
    origins_[field] = SetAt{std::move(where), ++settings_};
  }

  struct SetAt {
    std::string where;  // "file:line" or "--set ..."
    int64_t order;      // later settings have larger numbers
  };
  TrainConfig config_;
  std::map<std::string, SetAt> origins_;  // by field key
  int64_t settings_ = 0;
  std::vector<std::string> names_;        // the files being read, outermost first
};

absl::Status positive(const char* key, int64_t value) {
  if (value >= 1) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(key, " must be positive, got ", value));
}

absl::Status non_negative(const char* key, int64_t value) {
  if (value >= 0) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(key, " must be >= 0, got ", value));
}

}  // namespace

std::string closest_name(std::string_view name, const std::vector<std::string>& candidates) {
  return closest(absl::string_view(name.data(), name.size()), candidates);
}

absl::Status validate_config(const TrainConfig& config) {
  const TrainingConfig& training = config.training;
  const ParallelConfig& parallel = config.parallel;
  if (absl::Status status = config.model.validate(); !status.ok()) return status;
  if (absl::Status status = config.data.validate(); !status.ok()) return status;
  if (absl::Status status = config.optimizer.validate(); !status.ok()) return status;
  for (auto [key, value] : {std::pair{"training.micro_batch_size", training.micro_batch_size},
                            {"training.global_batch_size", training.global_batch_size},
                            {"training.steps", training.steps},
                            {"training.log_interval", training.log_interval},
                            {"parallel.tensor", parallel.tensor},
                            {"parallel.context", parallel.context},
                            {"parallel.data", parallel.data},
                            {"parallel.pipeline", parallel.pipeline},
                            {"parallel.expert", parallel.expert},
                            {"parallel.expert_tensor", parallel.expert_tensor}}) {
    if (absl::Status status = positive(key, value); !status.ok()) return status;
  }
  for (auto [key, value] : {std::pair{"training.eval_interval", training.eval_interval},
                            {"training.skip_samples", training.skip_samples},
                            {"training.eval_batches", training.eval_batches},
                            {"checkpoint.interval", config.checkpoint.interval},
                            {"checkpoint.keep_last_n", config.checkpoint.keep_last_n}}) {
    if (absl::Status status = non_negative(key, value); !status.ok()) return status;
  }
  if (absl::Status status = config.schedule.validate(training.steps); !status.ok()) return status;
  if (training.output_dir.empty()) return absl::InvalidArgumentError("training.output_dir is empty");
  if (training.device != "cpu" && training.device != "cuda") {
    return absl::InvalidArgumentError(absl::StrCat("training.device must be cpu or cuda, got '", training.device, "'"));
  }
  if (!(std::isfinite(training.peak_flops) && training.peak_flops >= 0)) {
    return absl::InvalidArgumentError(absl::StrCat("training.peak_flops must be >= 0, got ", training.peak_flops));
  }
  if (config.logging.progress != "auto" && config.logging.progress != "lines" && config.logging.progress != "none") {
    return absl::InvalidArgumentError(
        absl::StrCat("logging.progress must be auto, lines or none, got '", config.logging.progress, "'"));
  }

  // Cross-section checks.
  const int64_t per_step = training.micro_batch_size * parallel.data;
  if (training.global_batch_size % per_step != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "training.global_batch_size (", training.global_batch_size, ") must be a multiple of training.micro_batch_size (",
        training.micro_batch_size, ") x parallel.data (", parallel.data, ") = ", per_step));
  }
  if (config.data.seq_length > config.model.max_seq_len) {
    return absl::InvalidArgumentError(absl::StrCat("data.seq_length (", config.data.seq_length,
                                                   ") exceeds model.max_seq_len (", config.model.max_seq_len, ")"));
  }
  if (training.eval_batches > 0) {
    const char separator = config.data.split.find('/') != std::string::npos ? '/' : ',';
    std::vector<std::string> shares = absl::StrSplit(config.data.split, separator);
    double valid = 0;
    if (shares.size() < 2 || (absl::SimpleAtod(absl::StripAsciiWhitespace(shares[1]), &valid) && valid == 0)) {
      return absl::InvalidArgumentError(absl::StrCat("data.split \"", config.data.split,
                                                     "\" leaves no validation documents, but training.eval_batches is ",
                                                     training.eval_batches, " (0 skips validation)"));
    }
  }
  for (auto [key, value, what] : {std::tuple{"parallel.tensor", parallel.tensor, "tensor parallelism"},
                                  {"parallel.context", parallel.context, "context parallelism"},
                                  {"parallel.pipeline", parallel.pipeline, "pipeline parallelism"},
                                  {"parallel.expert_tensor", parallel.expert_tensor, "expert tensor parallelism"}}) {
    if (value > 1) {
      return absl::UnimplementedError(absl::StrCat(key, " = ", value, ": ", what,
                                                   " is not built yet (the Distributed issue lays it out); use 1"));
    }
  }
  if (parallel.expert > 1) {
    if (config.model.moe.num_experts == 0) {
      return absl::InvalidArgumentError(absl::StrCat("parallel.expert (", parallel.expert,
                                                     ") needs MoE layers, but moe.num_experts is 0"));
    }
    if (config.model.moe.num_experts % parallel.expert != 0) {
      return absl::InvalidArgumentError(absl::StrCat("parallel.expert (", parallel.expert,
                                                     ") must divide moe.num_experts (", config.model.moe.num_experts, ")"));
    }
  }
  if (!(std::isfinite(parallel.collective_timeout_s) && parallel.collective_timeout_s > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("parallel.collective_timeout_s must be positive, got ", parallel.collective_timeout_s));
  }
  if (parallel.overlap_chunks < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("parallel.overlap_chunks must be at least 1, got ", parallel.overlap_chunks));
  }
  if (!(std::isfinite(parallel.grad_bucket_mb) && parallel.grad_bucket_mb > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("parallel.grad_bucket_mb must be positive, got ", parallel.grad_bucket_mb));
  }
  return absl::OkStatus();
}

absl::StatusOr<TrainConfig> parse_config(const std::string& yaml, const std::string& name,
                                         const std::vector<std::string>& overrides, const std::string& base_dir) {
  Loader loader;
  std::vector<std::string> stack;
  const fs::path dir = base_dir.empty() ? fs::path(".") : fs::path(base_dir);
  if (absl::Status status = loader.apply_text(yaml, name, name, dir, &stack); !status.ok()) return status;
  for (const std::string& assignment : overrides) {
    if (absl::Status status = loader.apply_override(assignment); !status.ok()) return status;
  }
  if (absl::Status status = loader.validate(name); !status.ok()) return status;
  return std::move(loader.config());
}

absl::StatusOr<TrainConfig> load_config(const std::string& path, const std::vector<std::string>& overrides) {
  Loader loader;
  std::vector<std::string> stack;
  if (absl::Status status = loader.apply_file(path, path, &stack); !status.ok()) return status;
  for (const std::string& assignment : overrides) {
    if (absl::Status status = loader.apply_override(assignment); !status.ok()) return status;
  }
  if (absl::Status status = loader.validate(path); !status.ok()) return status;
  return std::move(loader.config());
}

std::string config_to_yaml(const TrainConfig& config) {
  std::string out;
  std::string section;
  for (const Key& key : keys()) {
    if (!key.write) continue;
    const size_t dot = key.name.find('.');
    if (key.name.substr(0, dot) != section) {
      section = key.name.substr(0, dot);
      absl::StrAppend(&out, section, ":\n");
    }
    const std::string value = key.write(config);
    absl::StrAppend(&out, "  ", key.name.substr(dot + 1), ":", value.starts_with('\n') ? "" : " ", value, "\n");
  }
  return out;
}

std::vector<ConfigKeyInfo> config_keys() {
  const TrainConfig defaults;
  std::vector<ConfigKeyInfo> rows;
  for (const Key& key : keys()) {
    const std::string default_value = key.write ? key.write(defaults) : "";
    rows.push_back({key.name, key.type, default_value, key.doc});
  }
  return rows;
}

}  // namespace sy
