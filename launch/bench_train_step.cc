// `switchyard bench train-step`: one full training step (forward + loss, backward, gradient
// clipping, AdamW) of the model a config describes, on one micro-batch of random tokens,
// against PyTorch eager training the same model from the same weights on the same tokens
// (scripts/bench/torch_train_step.py); throughput in tokens/s and MFU.
#include <omp.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/autograd/grad_mode.h"
#include "core/io/module_weights.h"
#include "core/ops/ops.h"
#include "core/random.h"
#include "launch/bench.h"
#include "launch/bench_peer.h"
#include "launch/config.h"
#include "moe/model.h"
#include "optim/grad_clip.h"
#include "optim/optimizer.h"

#ifndef SY_SOURCE_DIR
#define SY_SOURCE_DIR "."
#endif

namespace sy {
namespace {

constexpr int64_t kPeakMatmulSize = 1024;  // the peak MFU is measured against: a 1024^3 f32 matmul

// Median milliseconds of the phases of one step; field names are the peer's JSON keys.
struct StepTiming {
  double step_ms = 0, forward_ms = 0, backward_ms = 0, optimizer_ms = 0;
  double first_loss = 0, first_lm_loss = 0;  // of the first step: initial weights, same on both sides
  int64_t parameters = 0;
};

double milliseconds(std::chrono::steady_clock::time_point begin, std::chrono::steady_clock::time_point end) {
  return std::chrono::duration<double, std::milli>(end - begin).count();
}

// Runs warmup + repeats training steps on the same micro-batch; medians of the timed ones.
// zero_grad and the MoE layers' per-step count reset run before each step's clock starts.
StepTiming time_train_steps(Transformer& model, const TrainConfig& config, const Tensor& inputs, const Tensor& targets,
                            int warmup, int repeats) {
  std::unique_ptr<Optimizer> optimizer = make_optimizer(config.optimizer, model.named_parameters());
  const std::vector<Tensor> parameters = model.parameters();
  const std::vector<MoeLayer*> moe_layers = model.moe_layers();
  const double lr = config.optimizer.lr, max_norm = config.optimizer.grad_clip;
  std::vector<double> step, forward, backward, update;
  StepTiming timing;
  for (int i = 0; i < warmup + repeats; ++i) {
    optimizer->zero_grad();
    for (MoeLayer* layer : moe_layers) layer->reset_step_counts();
    const auto start = std::chrono::steady_clock::now();
    ModelOutput out = model.forward(inputs, targets);
    const auto forward_end = std::chrono::steady_clock::now();
    out.loss.backward();
    const auto backward_end = std::chrono::steady_clock::now();
    if (max_norm > 0) clip_grad_norm(parameters, max_norm);
    optimizer->step(lr);
    if (config.model.moe.expert_bias) {
      for (MoeLayer* layer : moe_layers) layer->router().update_expert_bias(layer->step_tokens_per_expert());
    }
    const auto end = std::chrono::steady_clock::now();
    if (i == 0) {
      timing.first_loss = out.loss.item();
      timing.first_lm_loss = out.lm_loss.item();
    }
    if (i < warmup) continue;
    step.push_back(milliseconds(start, end));
    forward.push_back(milliseconds(start, forward_end));
    backward.push_back(milliseconds(forward_end, backward_end));
    update.push_back(milliseconds(backward_end, end));
  }
  for (const Tensor& parameter : parameters) SY_CHECK(parameter.grad().defined(), "bench: a parameter got no gradient");
  timing.step_ms = median(step);
  timing.forward_ms = median(forward);
  timing.backward_ms = median(backward);
  timing.optimizer_ms = median(update);
  timing.parameters = model.num_parameters();
  return timing;
}

// Median milliseconds of an N x N x N f32 matmul without autograd, timed as the peer times it.
double time_matmul(int64_t n, int warmup, int repeats) {
  NoGradGuard no_grad;
  Generator generator(0);
  Tensor a = randn({n, n}, DType::kF32, &generator), b = randn({n, n}, DType::kF32, &generator);
  std::vector<double> samples;
  for (int i = 0; i < warmup + repeats; ++i) {
    const auto start = std::chrono::steady_clock::now();
    Tensor c = matmul(a, b);
    if (i >= warmup) samples.push_back(milliseconds(start, std::chrono::steady_clock::now()));
  }
  return median(samples);
}

// What the peer builds its model from: the keys of moe/config.h.
nlohmann::json model_json(const ModelConfig& model) {
  const MoeConfig& moe = model.moe;
  return {{"vocab_size", model.vocab_size},
          {"hidden_size", model.hidden_size},
          {"num_layers", model.num_layers},
          {"num_heads", model.num_heads},
          {"num_kv_heads", model.num_kv_heads},
          {"ffn_size", model.ffn_size},
          {"rope_theta", model.rope_theta},
          {"norm_eps", model.norm_eps},
          {"tie_embeddings", model.tie_embeddings},
          {"first_k_dense_layers", model.first_k_dense_layers},
          {"moe_layer_frequency", model.moe_layer_frequency},
          {"moe",
           {{"num_experts", moe.num_experts},
            {"top_k", moe.top_k},
            {"expert_ffn_size", moe.expert_ffn_size},
            {"num_shared_experts", moe.num_shared_experts},
            {"shared_expert_ffn_size", moe.shared_expert_ffn_size},
            {"shared_expert_gate", moe.shared_expert_gate},
            {"score_function", moe.score_function == ScoreFunction::kSigmoid ? "sigmoid" : "softmax"},
            {"pre_softmax", moe.pre_softmax},
            {"renormalize", moe.renormalize},
            {"routing_scale", moe.routing_scale},
            {"num_groups", moe.num_groups},
            {"group_topk", moe.group_topk},
            {"expert_bias", moe.expert_bias},
            {"bias_update_rate", moe.bias_update_rate},
            {"load_balance_coeff", moe.load_balance_coeff},
            {"sequence_load_balance_coeff", moe.sequence_load_balance_coeff},
            {"global_load_balance_coeff", moe.global_load_balance_coeff},
            {"z_loss_coeff", moe.z_loss_coeff}}}};
}

// The peer models everything of moe/config.h except what would make the two sides draw
// different random numbers or drop different tokens.
std::string peer_unsupported(const MoeConfig& moe) {
  if (moe.num_experts == 0) return "";
  if (moe.capacity_factor > 0) return "moe.capacity_factor > 0 (token dropping)";
  if (moe.input_jitter > 0) return "moe.input_jitter > 0 (random router noise)";
  return "";
}

std::string describe_model(const ModelConfig& model) {
  int64_t moe_layers = 0;
  for (int64_t layer = 0; layer < model.num_layers; ++layer) moe_layers += model.is_moe_layer(layer) ? 1 : 0;
  const MoeConfig& moe = model.moe;
  std::string ffn = absl::StrCat(model.num_layers - moe_layers, " dense (F ", model.ffn_size, ")");
  if (moe_layers > 0) {
    absl::StrAppend(&ffn, ", ", moe_layers, " MoE (E ", moe.num_experts, ", K ", moe.top_k, ", F ", moe.expert_ffn_size);
    if (moe.num_shared_experts > 0) {
      absl::StrAppend(&ffn, ", ", moe.num_shared_experts, " shared of F ", moe.shared_expert_ffn_size);
    }
    absl::StrAppend(&ffn, ")");
  }
  return absl::StrCat("L ", model.num_layers, ": ", ffn, "; C ", model.hidden_size, ", H ", model.num_heads, ", Hkv ",
                      model.num_kv_heads, ", V ", model.vocab_size);
}

std::string with_commas(int64_t n) {
  std::string digits = std::to_string(n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

struct Options {
  std::string config_path;
  int warmup = 2, repeats = 10;
  bool with_torch = true;
};

// Returns false (after a message) on a bad argument.
bool parse_options(const std::vector<std::string>& args, Options* options) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    auto count = [&](int* out) {
      if (i + 1 >= args.size() || !absl::SimpleAtoi(args[i + 1], out) || *out < 1) {
        std::fprintf(stderr, "switchyard bench: %s expects a positive integer\n", arg.c_str());
        return false;
      }
      ++i;
      return true;
    };
    if (arg == "--repeats" || arg == "--warmup") {
      if (!count(arg == "--repeats" ? &options->repeats : &options->warmup)) return false;
    } else if (arg == "--no-torch") {
      options->with_torch = false;
    } else if (arg == "--config" && i + 1 < args.size()) {
      options->config_path = args[++i];
    } else {
      std::fprintf(stderr, "switchyard bench train-step: unknown argument '%s' (expected --config FILE, --repeats N, "
                   "--warmup N, --no-torch)\n", arg.c_str());
      return false;
    }
  }
  if (options->config_path.empty()) {
    // The quickstart model, from the working directory or else from the source tree.
    options->config_path = "configs/quickstart.yaml";
    if (!std::filesystem::exists(options->config_path)) {
      options->config_path = std::string(SY_SOURCE_DIR) + "/configs/quickstart.yaml";
    }
  }
  return true;
}

// One table row: the two sides' values, formatted, and torch / ours (above 1: we are faster).
void print_row(const std::string& name, const std::string& ours, const std::string& torch, double ratio) {
  const std::string ratio_text = std::isfinite(ratio) ? absl::StrFormat("%.2fx", ratio) : "-";
  std::printf("| %-26s | %14s | %14s | %12s |\n", name.c_str(), ours.c_str(), torch.c_str(), ratio_text.c_str());
}

}  // namespace

int run_bench_train_step(const std::vector<std::string>& args) {
  Options options;
  if (!parse_options(args, &options)) return 2;
  absl::StatusOr<TrainConfig> loaded = load_config(options.config_path);
  if (!loaded.ok()) {
    std::fprintf(stderr, "switchyard bench: %s\n", std::string(loaded.status().message()).c_str());
    return 1;
  }
  const TrainConfig& config = *loaded;
  const ModelConfig& model_config = config.model;
  if (const std::string unsupported = peer_unsupported(model_config.moe); options.with_torch && !unsupported.empty()) {
    std::fprintf(stderr, "switchyard bench: %s: the PyTorch peer does not model %s; run with --no-torch\n",
                 options.config_path.c_str(), unsupported.c_str());
    return 1;
  }
  const int64_t B = config.training.micro_batch_size, T = config.data.seq_length, V = model_config.vocab_size;
  const int warmup = options.warmup, repeats = options.repeats;

  Transformer model(model_config);
  model.set_recompute(config.training.recompute);
  model.train();
  // T + 1 tokens per sequence: inputs and next-token targets, uniform over the vocabulary.
  Generator generator(config.training.seed);
  const Tensor tokens = (rand({B, T + 1}, DType::kF64, &generator) * static_cast<double>(V)).to(DType::kI64);
  const Tensor inputs = tokens.narrow(1, 0, T).contiguous(), targets = tokens.narrow(1, 1, T).contiguous();

  // The initial weights go to the peer before our steps change them.
  std::string scratch;
  if (options.with_torch) {
    char scratch_template[] = "/tmp/switchyard-bench-XXXXXX";
    if (mkdtemp(scratch_template) == nullptr) {
      std::fprintf(stderr, "switchyard bench: could not create a temporary directory for the PyTorch peer\n");
      return 1;
    }
    scratch = scratch_template;
    if (absl::Status saved = save_weights(model, scratch + "/weights.safetensors"); !saved.ok()) {
      std::fprintf(stderr, "switchyard bench: %s\n", std::string(saved.message()).c_str());
      std::filesystem::remove_all(scratch);
      return 1;
    }
  }

  const char* coretype = std::getenv("OPENBLAS_CORETYPE");
  std::printf("switchyard bench train-step: %s, on the CPU: forward + loss, backward, grad clip, AdamW on one "
              "micro-batch of B %ld x T %ld = %ld random tokens; median of %d steps (after %d warmup), %d threads, "
              "OPENBLAS_CORETYPE=%s\n",
              options.config_path.c_str(), static_cast<long>(B), static_cast<long>(T), static_cast<long>(B * T),
              repeats, warmup, omp_get_max_threads(), coretype ? coretype : "(OpenBLAS default)");
  std::fflush(stdout);

  const StepTiming ours = time_train_steps(model, config, inputs, targets, warmup, repeats);
  const double our_matmul_ms = time_matmul(kPeakMatmulSize, warmup, repeats);

  StepTiming torch;
  double torch_matmul_ms = 0;
  std::string note;
  bool have_torch = false;
  if (options.with_torch) {
    const std::string matmul_name = absl::StrCat("matmul ", kPeakMatmulSize, "^3");
    nlohmann::json cases = nlohmann::json::array();
    cases.push_back({{"name", matmul_name}, {"kind", "matmul"}, {"size", kPeakMatmulSize}});
    cases.push_back({{"name", "train step"},
                     {"kind", "train_step"},
                     {"model", model_json(model_config)},
                     {"optimizer",
                      {{"lr", config.optimizer.lr},
                       {"beta1", config.optimizer.beta1},
                       {"beta2", config.optimizer.beta2},
                       {"eps", config.optimizer.eps},
                       {"weight_decay", config.optimizer.weight_decay},
                       {"grad_clip", config.optimizer.grad_clip}}},
                     {"recompute", config.training.recompute},
                     {"batch", B},
                     {"seq_length", T},
                     {"tokens", tokens.to_vector<int64_t>()},
                     {"weights", scratch + "/weights.safetensors"}});
    std::map<std::string, nlohmann::json> rows = run_torch_peer("torch_train_step.py", cases, warmup, repeats, &note);
    std::filesystem::remove_all(scratch);
    if (rows.count(matmul_name) && rows.count("train step")) {
      const nlohmann::json& row = rows["train step"];
      torch_matmul_ms = rows[matmul_name]["median_ms"].get<double>();
      torch.step_ms = row["median_ms"].get<double>();
      torch.forward_ms = row["forward_ms"].get<double>();
      torch.backward_ms = row["backward_ms"].get<double>();
      torch.optimizer_ms = row["optimizer_ms"].get<double>();
      torch.first_loss = row["first_loss"].get<double>();
      torch.first_lm_loss = row["first_lm_loss"].get<double>();
      torch.parameters = row["parameters"].get<int64_t>();
      have_torch = true;
    }
  }

  const FlopCount flops = count_flops(model_config, T);
  const double matmul_flops = 2.0 * std::pow(static_cast<double>(kPeakMatmulSize), 3);
  const double our_peak = matmul_flops / (our_matmul_ms * 1e-3);
  const double torch_peak = have_torch ? matmul_flops / (torch_matmul_ms * 1e-3) : 0;
  // One peak for both sides, the machine's best measured f32 matmul, so MFU compares like speed.
  const double peak = config.training.peak_flops > 0 ? config.training.peak_flops : std::max(our_peak, torch_peak);
  auto tokens_per_second = [&](const StepTiming& t) { return static_cast<double>(B * T) / (t.step_ms * 1e-3); };
  auto mfu = [&](const StepTiming& t) { return tokens_per_second(t) * flops.training_flops_per_token / peak; };

  std::printf("model: %s\n", describe_model(model_config).c_str());
  std::printf("parameters: switchyard %s%s; active %s; training FLOPs per token %.2f M (count_flops, T %ld)\n",
              with_commas(ours.parameters).c_str(),
              have_torch ? absl::StrCat(", PyTorch ", with_commas(torch.parameters)).c_str() : "",
              with_commas(flops.active_parameters).c_str(), flops.training_flops_per_token * 1e-6,
              static_cast<long>(T));
  std::printf("peak: %ld^3 f32 matmul, median: switchyard %.1f GFLOP/s%s; MFU against %.1f GFLOP/s (%s)\n",
              static_cast<long>(kPeakMatmulSize), our_peak * 1e-9,
              have_torch ? absl::StrFormat(", PyTorch %.1f GFLOP/s", torch_peak * 1e-9).c_str() : "", peak * 1e-9,
              config.training.peak_flops > 0 ? "training.peak_flops" : "the faster matmul");
  if (have_torch) {
    std::printf("first-step loss, same weights and tokens: switchyard %.6f (LM %.6f), PyTorch %.6f (LM %.6f)\n",
                ours.first_loss, ours.first_lm_loss, torch.first_loss, torch.first_lm_loss);
  }

  const double nan = std::nan("");
  auto ms = [](double value) { return absl::StrFormat("%.1f", value); };
  auto phase = [](double value, double step) { return absl::StrFormat("%.1f (%.0f%%)", value, 100.0 * value / step); };
  std::printf("\n| %-26s | %14s | %14s | %12s |\n", "train step", "switchyard", "pytorch", "torch / ours");
  std::printf("|%s|%s|%s|%s|\n", std::string(28, '-').c_str(), std::string(16, '-').c_str(),
              std::string(16, '-').c_str(), std::string(14, '-').c_str());
  print_row("ms / step", ms(ours.step_ms), have_torch ? ms(torch.step_ms) : "-",
            have_torch ? torch.step_ms / ours.step_ms : nan);
  const struct {
    const char* name;
    double StepTiming::*field;
  } phases[] = {{"  forward + loss ms", &StepTiming::forward_ms},
                {"  backward ms", &StepTiming::backward_ms},
                {"  grad clip + AdamW ms", &StepTiming::optimizer_ms}};
  for (const auto& [name, field] : phases) {
    print_row(name, phase(ours.*field, ours.step_ms), have_torch ? phase(torch.*field, torch.step_ms) : "-",
              have_torch ? torch.*field / ours.*field : nan);
  }
  print_row("tokens / s", absl::StrFormat("%.0f", tokens_per_second(ours)),
            have_torch ? absl::StrFormat("%.0f", tokens_per_second(torch)) : "-",
            have_torch ? tokens_per_second(ours) / tokens_per_second(torch) : nan);
  print_row("MFU", absl::StrFormat("%.2f%%", 100.0 * mfu(ours)),
            have_torch ? absl::StrFormat("%.2f%%", 100.0 * mfu(torch)) : "-",
            have_torch ? mfu(ours) / mfu(torch) : nan);
  std::printf("\n%sPhase rows: the median of each phase (they need not add up to the step's median) and its "
              "share of the step. %s\n", options.with_torch ? "ratio > 1: Switchyard is faster. " : "", note.c_str());

  if (!options.with_torch) return 0;
  if (!have_torch) {
    std::fprintf(stderr, "switchyard bench: the PyTorch peer gave no result (see above)\n");
    return 1;
  }
  // The ratio means something only if the peer trains the same model.
  if (torch.parameters != ours.parameters) {
    std::fprintf(stderr, "switchyard bench: the PyTorch peer has %ld parameters, Switchyard %ld\n",
                 static_cast<long>(torch.parameters), static_cast<long>(ours.parameters));
    return 1;
  }
  if (std::fabs(torch.first_loss - ours.first_loss) > 1e-3 * std::fabs(ours.first_loss)) {
    std::fprintf(stderr, "switchyard bench: the PyTorch peer's first-step loss %.6f differs from Switchyard's %.6f "
                 "by more than 1e-3 relative: it does not train the same model\n", torch.first_loss, ours.first_loss);
    return 1;
  }
  return 0;
}

}  // namespace sy
