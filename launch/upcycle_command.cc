// `switchyard upcycle` (launch/upcycle_command.h): argument parsing, the two dense inputs
// (Switchyard checkpoint; Hugging Face config.json + safetensors with `model.` names), and the
// atomic write of the MoE checkpoint (a temporary sibling folder renamed into place).
#include "launch/upcycle_command.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/check.h"
#include "core/io/safetensors.h"
#include "launch/checkpoint.h"
#include "launch/config.h"
#include "moe/model.h"
#include "moe/upcycle.h"
#include "optim/optimizer.h"

namespace sy {
namespace {

namespace fs = std::filesystem;

constexpr char kUsage[] =
    "usage: switchyard upcycle --dense DENSE --config MOE.yaml --output DIR [options]\n"
    "  --dense DENSE          a Switchyard checkpoint of a dense model (a run folder, its checkpoints/\n"
    "                         folder or one step); a Hugging Face model folder (config.json and\n"
    "                         *.safetensors, Llama names `model.layers.N...`); or one safetensors file\n"
    "                         (those names, or Switchyard ones as `switchyard checkpoint export` writes)\n"
    "  --dense-config FILE    for a safetensors DENSE: its Hugging Face config.json, or a Switchyard YAML\n"
    "                         (default: config.json next to the safetensors file)\n"
    "  --config MOE.yaml      the MoE run's config (its model and moe sections say what to build)\n"
    "  --set K=V              override a key of MOE.yaml, e.g. --set moe.num_experts=16\n"
    "  --output DIR           the new checkpoint folder (must not exist); train from it with\n"
    "                         `checkpoint.load: DIR`\n"
    "  --router virtual_group|random   router rows: shared within each copy of the dense FFN's slices\n"
    "                         (default), or all independent\n"
    "  --router-std S         the router rows' normal(0, S) draw (default 0.02)\n"
    "  --shared-experts dense|random   shared experts from the dense FFN's first units (default) or fresh\n"
    "  --routed-experts dense|random   routed experts from the dense FFN (default) or fresh\n"
    "  --granularity G        refuse unless the widths give granularity G\n"
    "  --noise S              add S * rms(weight) normal noise to each routed expert (default 0)\n"
    "  --seed N               router rows and noise (default 0)\n"
    "Granularity G = (dense ffn_size - shared width) / moe.expert_ffn_size: G = 1 copies the dense FFN\n"
    "into every expert; G > 1 cuts it into G slices (E = G x copies). README.md says which routing\n"
    "settings give exactly the dense model's outputs.\n";

struct Arguments {
  std::string dense, dense_config, config, output;
  std::vector<std::string> overrides;
  UpcycleOptions options;
};

absl::Status usage_error(const std::string& message) {
  return absl::InvalidArgumentError(absl::StrCat(message, "\n", kUsage));
}

absl::StatusOr<Arguments> parse_arguments(const std::vector<std::string>& args) {
  Arguments parsed;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (i + 1 >= args.size()) return usage_error(absl::StrCat("unknown or incomplete argument '", arg, "'"));
    const std::string& value = args[++i];
    auto number = [&](auto* target) -> absl::Status {
      bool ok = false;
      if constexpr (std::is_same_v<std::remove_pointer_t<decltype(target)>, double>) {
        ok = absl::SimpleAtod(value, target) && *target >= 0;
      } else {
        ok = absl::SimpleAtoi(value, target) && *target >= 0;
      }
      return ok ? absl::OkStatus()
                : absl::InvalidArgumentError(absl::StrCat(arg, " expects a number >= 0, got '", value, "'"));
    };
    auto source = [&](ExpertSource* target) -> absl::Status {
      if (value == "dense" || value == "random") {
        *target = value == "dense" ? ExpertSource::kDense : ExpertSource::kRandom;
        return absl::OkStatus();
      }
      return absl::InvalidArgumentError(absl::StrCat(arg, " expects dense or random, got '", value, "'"));
    };
    absl::Status status;
    if (arg == "--dense") {
      parsed.dense = value;
    } else if (arg == "--dense-config") {
      parsed.dense_config = value;
    } else if (arg == "--config") {
      parsed.config = value;
    } else if (arg == "--set") {
      parsed.overrides.push_back(value);
    } else if (arg == "--output") {
      parsed.output = value;
    } else if (arg == "--router") {
      if (value != "virtual_group" && value != "random") {
        return absl::InvalidArgumentError(absl::StrCat("--router expects virtual_group or random, got '", value, "'"));
      }
      parsed.options.router = value == "random" ? RouterInit::kRandom : RouterInit::kVirtualGroup;
    } else if (arg == "--router-std") {
      status = number(&parsed.options.router_std);
    } else if (arg == "--shared-experts") {
      status = source(&parsed.options.shared_experts);
    } else if (arg == "--routed-experts") {
      status = source(&parsed.options.routed_experts);
    } else if (arg == "--granularity") {
      status = number(&parsed.options.granularity);
    } else if (arg == "--noise") {
      status = number(&parsed.options.noise);
    } else if (arg == "--seed") {
      if (!absl::SimpleAtoi(value, &parsed.options.seed)) {
        return absl::InvalidArgumentError(absl::StrCat("--seed expects a non-negative integer, got '", value, "'"));
      }
    } else {
      return usage_error(absl::StrCat("unknown argument '", arg, "'"));
    }
    if (!status.ok()) return status;
  }
  for (auto [flag, value] : {std::pair{"--dense", &parsed.dense}, {"--config", &parsed.config}, {"--output", &parsed.output}}) {
    if (value->empty()) return usage_error(absl::StrCat(flag, " is required"));
  }
  return parsed;
}

// A Hugging Face Llama-style config.json as our dense ModelConfig; `base` supplies what the
// file does not decide (init, max_seq_len: positions are not weights).
absl::StatusOr<ModelConfig> read_hf_config(const std::string& path, const ModelConfig& base) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot read the dense model's config.json"));
  nlohmann::json json = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) return absl::InvalidArgumentError(absl::StrCat(path, ": not a JSON object"));
  ModelConfig config = base;
  config.moe = MoeConfig();
  config.first_k_dense_layers = 0;
  config.moe_layer_frequency = 1;
  auto integer = [&](const char* key, int64_t* target, bool required) -> absl::Status {
    if (!json.contains(key) || json[key].is_null()) {
      return required ? absl::InvalidArgumentError(absl::StrCat(path, ": missing \"", key, "\"")) : absl::OkStatus();
    }
    if (!json[key].is_number_integer()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": \"", key, "\" must be an integer, got ", json[key].dump()));
    }
    *target = json[key].get<int64_t>();
    return absl::OkStatus();
  };
  auto real = [&](const char* key, double* target) -> absl::Status {
    if (!json.contains(key) || json[key].is_null()) return absl::OkStatus();
    if (!json[key].is_number()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": \"", key, "\" must be a number, got ", json[key].dump()));
    }
    *target = json[key].get<double>();
    return absl::OkStatus();
  };
  config.rope_theta = 10000.0;  // the Llama defaults when the file leaves them out
  config.norm_eps = 1e-6;
  config.tie_embeddings = false;
  config.num_kv_heads = 0;
  for (absl::Status status :
       {integer("hidden_size", &config.hidden_size, true), integer("intermediate_size", &config.ffn_size, true),
        integer("num_attention_heads", &config.num_heads, true), integer("num_hidden_layers", &config.num_layers, true),
        integer("vocab_size", &config.vocab_size, true), integer("num_key_value_heads", &config.num_kv_heads, false),
        real("rope_theta", &config.rope_theta), real("rms_norm_eps", &config.norm_eps)}) {
    if (!status.ok()) return status;
  }
  if (config.num_kv_heads == 0) config.num_kv_heads = config.num_heads;
  if (json.contains("tie_word_embeddings")) {
    if (!json["tie_word_embeddings"].is_boolean()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": \"tie_word_embeddings\" must be true or false"));
    }
    config.tie_embeddings = json["tie_word_embeddings"].get<bool>();
  }
  // What our dense block cannot represent.
  if (json.contains("hidden_act") && json["hidden_act"] != "silu") {
    return absl::InvalidArgumentError(absl::StrCat(path, ": \"hidden_act\" is ", json["hidden_act"].dump(),
                                                   "; only SwiGLU FFNs (\"silu\") can be upcycled"));
  }
  for (const char* key : {"attention_bias", "mlp_bias"}) {
    if (json.contains(key) && json[key] == true) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": \"", key, "\" is true; Switchyard layers have no biases"));
    }
  }
  if (json.contains("rope_scaling") && !json["rope_scaling"].is_null()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": \"rope_scaling\" ", json["rope_scaling"].dump(),
                                                   " is not supported (plain RoPE only)"));
  }
  for (const char* key : {"num_local_experts", "num_experts", "n_routed_experts"}) {
    if (json.contains(key) && json[key].is_number() && json[key].get<double>() > 0) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": \"", key, "\" is ", json[key].dump(),
                                                     ": the model is already an MoE; upcycling needs a dense one"));
    }
  }
  if (json.contains("head_dim") && json["head_dim"].is_number_integer() && config.num_heads > 0 &&
      json["head_dim"].get<int64_t>() * config.num_heads != config.hidden_size) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": \"head_dim\" ", json["head_dim"].get<int64_t>(), " x ",
                                                   config.num_heads, " heads != hidden_size ", config.hidden_size));
  }
  if (absl::Status status = config.validate(); !status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", status.message()));
  }
  return config;
}

struct DenseModel {
  ModelConfig config;
  std::unique_ptr<Transformer> model;
};

// Safetensors files of a dense model (a Hugging Face folder may split it over several):
// `model.` prefixes dropped, rotary buffers skipped; `config_path` describes it.
absl::StatusOr<DenseModel> read_dense_safetensors(const std::vector<std::string>& files, const std::string& config_path,
                                                  const ModelConfig& base) {
  DenseModel dense;
  if (absl::EndsWith(config_path, ".json")) {
    absl::StatusOr<ModelConfig> config = read_hf_config(config_path, base);
    if (!config.ok()) return config.status();
    dense.config = *config;
  } else {
    absl::StatusOr<TrainConfig> config = load_config(config_path);
    if (!config.ok()) return config.status();
    dense.config = config->model;
  }
  StateDict state;
  for (const std::string& path : files) {
    absl::StatusOr<SafetensorsFile> file = read_safetensors(path);
    if (!file.ok()) return file.status();
    for (const auto& [name, tensor] : file->tensors) {
      if (absl::EndsWith(name, "rotary_emb.inv_freq")) continue;  // derived, saved by old HF versions
      state[absl::StartsWith(name, "model.") ? name.substr(6) : name] = tensor;
    }
  }
  dense.model = std::make_unique<Transformer>(dense.config);
  if (absl::Status status = dense.model->load_state_dict(state); !status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(absl::StrJoin(files, ", "), " do(es) not hold the dense model ",
                                                   config_path, " describes: ", status.message()));
  }
  return dense;
}

absl::StatusOr<DenseModel> read_dense_checkpoint(const std::string& path) {
  absl::StatusOr<std::string> directory = resolve_checkpoint(path);
  if (!directory.ok()) return directory.status();
  absl::StatusOr<std::string> yaml = read_checkpoint_config(*directory);
  if (!yaml.ok()) return yaml.status();
  absl::StatusOr<TrainConfig> config = parse_config(*yaml, (fs::path(*directory) / "config.yaml").string());
  if (!config.ok()) return config.status();
  DenseModel dense{config->model, std::make_unique<Transformer>(config->model)};
  absl::StatusOr<TrainState> loaded = load_checkpoint(*directory, *dense.model, nullptr);
  if (!loaded.ok()) return loaded.status();
  return dense;
}

// --dense: a safetensors file; a Switchyard checkpoint (a step, a checkpoints/ folder, or a run
// folder holding one); or a Hugging Face folder (config.json and *.safetensors).
absl::StatusOr<DenseModel> read_dense(const Arguments& arguments, const ModelConfig& base) {
  const fs::path dense(arguments.dense);
  std::error_code error;
  if (fs::is_regular_file(dense, error)) {
    const std::string config = arguments.dense_config.empty() ? (dense.parent_path() / "config.json").string()
                                                              : arguments.dense_config;
    return read_dense_safetensors({arguments.dense}, config, base);
  }
  if (resolve_checkpoint(arguments.dense).ok()) return read_dense_checkpoint(arguments.dense);
  if (resolve_checkpoint((dense / "checkpoints").string()).ok()) return read_dense_checkpoint((dense / "checkpoints").string());
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(dense, error)) {
    if (entry.path().extension() == ".safetensors") files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());
  const std::string config = arguments.dense_config.empty() ? (dense / "config.json").string() : arguments.dense_config;
  if (files.empty() || !fs::exists(config, error)) {
    return absl::NotFoundError(absl::StrCat(
        arguments.dense, ": neither a Switchyard checkpoint (a step directory, a checkpoints/ folder or a run folder "
                         "holding one) nor a Hugging Face model folder (config.json and *.safetensors)"));
  }
  return read_dense_safetensors(files, config, base);
}

const char* describe(ExpertSource source) { return source == ExpertSource::kDense ? "dense" : "random"; }

}  // namespace

absl::Status upcycle_command(const std::vector<std::string>& args, std::FILE* out) {
  if (args.size() == 1 && (args[0] == "--help" || args[0] == "-h")) {
    std::fputs(kUsage, out);
    return absl::OkStatus();
  }
  absl::StatusOr<Arguments> arguments = parse_arguments(args);
  if (!arguments.ok()) return arguments.status();
  std::error_code error;
  if (fs::exists(arguments->output, error)) {
    return absl::AlreadyExistsError(
        absl::StrCat(arguments->output, " exists; upcycle writes a new checkpoint folder and never replaces one"));
  }
  absl::StatusOr<TrainConfig> config = load_config(arguments->config, arguments->overrides);
  if (!config.ok()) return config.status();
  if (!fs::exists(arguments->dense, error)) return absl::NotFoundError(absl::StrCat(arguments->dense, ": no such file or directory"));

  absl::StatusOr<DenseModel> dense = read_dense(*arguments, config->model);
  if (!dense.ok()) return dense.status();

  Transformer moe(config->model);
  absl::StatusOr<UpcyclePlan> plan = upcycle(dense->model->state_dict(), dense->config, moe, arguments->options);
  if (!plan.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot upcycle ", arguments->dense, " into ", arguments->config,
                                                   ": ", plan.status().message()));
  }
  dense->model.reset();

  // The checkpoint in a temporary sibling, renamed whole into place.
  const fs::path output = fs::absolute(arguments->output);
  fs::create_directories(output.parent_path(), error);
  if (error) return absl::PermissionDeniedError(absl::StrCat(output.parent_path().string(), ": ", error.message()));
  const fs::path temporary = output.parent_path() / absl::StrCat(".", output.filename().string(), ".tmp-", getpid());
  fs::remove_all(temporary, error);
  const std::unique_ptr<Optimizer> optimizer = make_optimizer(config->optimizer, moe.named_parameters());
  const std::string yaml = absl::StrCat("# upcycled from ", arguments->dense, ": ", plan->exactness, "\n",
                                        config_to_yaml(*config));
  absl::Status status = save_checkpoint(temporary.string(), moe, *optimizer, TrainState(), yaml, /*keep_last_n=*/0);
  if (status.ok()) {
    fs::rename(temporary, output, error);
    if (error) status = absl::PermissionDeniedError(absl::StrCat(output.string(), ": cannot rename into place: ", error.message()));
  }
  if (!status.ok()) {
    fs::remove_all(temporary, error);
    return status;
  }

  const MoeConfig& m = config->model.moe;
  std::fprintf(out,
               "upcycled %s (dense, %lld layers, ffn_size %lld) into %lld experts (F %lld) top-%lld per MoE layer:\n"
               "  granularity %lld (%lld copies), shared experts %s (%lld units), routed experts %s, router %s, "
               "expert down projections x %g, noise %g\n"
               "  %s\n"
               "wrote %s (step 0); continue training with `checkpoint.load: %s`\n",
               arguments->dense.c_str(), static_cast<long long>(dense->config.num_layers),
               static_cast<long long>(plan->dense_ffn_size), static_cast<long long>(m.num_experts),
               static_cast<long long>(m.expert_ffn_size), static_cast<long long>(m.top_k),
               static_cast<long long>(plan->granularity), static_cast<long long>(plan->copies),
               describe(arguments->options.shared_experts), static_cast<long long>(plan->shared_width),
               describe(arguments->options.routed_experts),
               arguments->options.router == RouterInit::kVirtualGroup ? "virtual_group" : "random",
               plan->expert_scale, arguments->options.noise, plan->exactness.c_str(), arguments->output.c_str(),
               arguments->output.c_str());
  return absl::OkStatus();
}

int run_upcycle(const std::vector<std::string>& args) {
  absl::Status status;
  try {
    status = upcycle_command(args, stdout);
  } catch (const Error& error) {
    status = absl::InternalError(error.what());
  }
  if (status.ok()) return 0;
  std::fprintf(stderr, "switchyard upcycle: %s\n", std::string(status.message()).c_str());
  return 1;
}

}  // namespace sy
