#include "launch/trainer.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/autograd/grad_mode.h"
#include "core/io/atomic_file.h"
#include "core/ops/ops.h"
#include "core/random.h"
#include "data/indexed_dataset.h"
#include "data/loader.h"
#include "data/tokenizer.h"
#include "launch/checkpoint.h"
#include "launch/metrics.h"
#include "moe/model.h"
#include "optim/grad_clip.h"
#include "optim/optimizer.h"
#include "optim/schedule.h"
#include "parallel/data_parallel.h"
#include "parallel/local_communicator.h"
#include "parallel/process_groups.h"

namespace sy {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// SIGINT/SIGTERM set this; the loop stops after the step in flight, with a checkpoint.
std::atomic<int> stop_signal{0};

void on_stop_signal(int signal) { stop_signal.store(signal); }

class SignalScope {
 public:
  SignalScope() {
    stop_signal.store(0);
    struct sigaction action = {};
    action.sa_handler = on_stop_signal;
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, &previous_int_);
    sigaction(SIGTERM, &action, &previous_term_);
  }
  ~SignalScope() {
    sigaction(SIGINT, &previous_int_, nullptr);
    sigaction(SIGTERM, &previous_term_, nullptr);
  }

 private:
  struct sigaction previous_int_ = {};
  struct sigaction previous_term_ = {};
};

// Which samples this process reads and how its micro-batches add up to the global batch:
// data-parallel rank d reads micro-batches d * accumulation .. (d + 1) * accumulation - 1 of
// each step, so one process with DP times the accumulation reads the same micro-batches.
// Global sample numbers start at `skip_samples` (training.skip_samples).
struct RankPlan {
  int64_t skip_samples = 0;
  int64_t data_rank = 0;
  int64_t data_size = 1;
  int64_t micro_batch_size = 1;
  int64_t accumulation = 1;
  int64_t global_batch_size = 1;

  // Global number of the first sample of micro-batch `micro` of the step that starts at
  // `consumed` samples: the step's global batch is laid out rank-major.
  int64_t first_sample(int64_t consumed, int64_t micro) const {
    return skip_samples + consumed + (data_rank * accumulation + micro) * micro_batch_size;
  }
};

// Dense f32 matrix-product speed of this process, the MFU denominator when none is configured.
double measure_peak_flops(Device device) {
  const int64_t n = 1024;
  Tensor a = randn({n, n}).to(device), b = randn({n, n}).to(device);
  NoGradGuard no_grad;
  double best = 0;
  for (int repeat = 0; repeat < 4; ++repeat) {
    auto start = Clock::now();
    Tensor c = matmul(a, b);
    c.to(Device::CPU());  // waits for the device
    double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    if (repeat > 0) best = std::max(best, 2.0 * n * n * n / seconds);
  }
  return best;
}

// Entropy (nats/token) of the token frequencies of every dataset the config trains on: the
// loss a model that ignores context can reach.
absl::StatusOr<double> unigram_entropy(const DataConfig& config) {
  std::vector<double> counts;
  double total = 0;
  for (const DataSource& source : config.sources) {
    absl::StatusOr<std::shared_ptr<IndexedDataset>> dataset = IndexedDataset::open(source.prefix);
    if (!dataset.ok()) return dataset.status();
    std::vector<int64_t> tokens;
    for (int64_t document = 0; document < (*dataset)->num_documents(); ++document) {
      tokens.resize((*dataset)->document_length(document));
      (*dataset)->read(document, 0, tokens);
      for (int64_t token : tokens) {
        if (token >= static_cast<int64_t>(counts.size())) counts.resize(token + 1, 0.0);
        counts[token] += source.weight;
        total += source.weight;
      }
    }
  }
  double entropy = 0;
  for (double count : counts) {
    if (count > 0) entropy -= count / total * std::log(count / total);
  }
  return entropy;
}

// A resumed run repeats the steps logged after its checkpoint: drop their lines from
// metrics.jsonl so that each step appears once.
absl::Status drop_metrics_after(const fs::path& path, int64_t step) {
  std::ifstream in(path);
  if (!in) return absl::OkStatus();
  std::string kept;
  for (std::string line; std::getline(in, line);) {
    nlohmann::json record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (record.is_object() && record.contains("step") && record["step"].get<int64_t>() > step) continue;
    kept += line + "\n";
  }
  return write_file_atomically(path.string(), kept);
}

double median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

// Per-layer sums of one step's MoE statistics over its micro-batches.
struct LayerTotals {
  double load_balance = 0, sequence_load_balance = 0, global_load_balance = 0, z_loss = 0;
  Tensor tokens_per_expert;  // (E) f64
  int64_t dropped = 0;
};

double value_or_zero(const Tensor& loss) { return loss.defined() ? loss.item() : 0.0; }

class Run {
 public:
  Run(const TrainConfig& config, const TrainOptions& options) : config_(config), options_(options) {}

  absl::Status setup();
  absl::StatusOr<TrainSummary> loop();

 private:
  absl::Status prepare_output();
  double evaluate();
  Scalars step_scalars(int64_t step, double lm_loss, double aux_loss, double grad_norm, double lr,
                       double tokens_per_second, double mfu, const std::vector<LayerTotals>& layers) const;
  absl::Status save(int64_t step);
  absl::Status setup_rank();
  bool first_rank() const { return groups_.is_first_rank(); }
  void print(const std::string& line) {
    if (metrics_) metrics_->print(line);
  }
  CheckpointRank checkpoint_rank() const;
  void reduce_over_data_ranks(double* lm_loss, double* aux_loss, std::vector<LayerTotals>* layers) const;

  const TrainConfig& config_;
  TrainOptions options_;
  Device device_ = Device::CPU();
  RankPlan plan_;
  std::string checkpoint_root_;
  std::unique_ptr<Loader> train_loader_, valid_loader_;
  std::unique_ptr<Transformer> model_;
  std::unique_ptr<Optimizer> optimizer_;
  std::unique_ptr<MetricsWriter> metrics_;
  ProcessGroups groups_;
  std::unique_ptr<GradientReducer> reducer_;
  std::vector<ReducedParameter> parameters_;
  std::vector<ReducedParameter> replicas_;  // parameters_ and the buffers
  TrainState state_;
  FlopCount flops_;
  double peak_flops_ = 0;
  double unigram_entropy_ = 0;
  std::string config_yaml_;
};

absl::Status Run::prepare_output() {
  checkpoint_root_ = (fs::path(config_.training.output_dir) / "checkpoints").string();
  absl::StatusOr<std::string> latest = resolve_checkpoint(checkpoint_root_);
  if (latest.ok() && !options_.resume) {
    return absl::AlreadyExistsError(absl::StrCat(
        "training.output_dir ", config_.training.output_dir, " already holds checkpoint ", *latest,
        "; pass --resume to continue it, or choose another output_dir (nothing was changed)"));
  }
  if (!latest.ok() && options_.resume && fs::exists(checkpoint_root_)) {
    return absl::NotFoundError(absl::StrCat("--resume: ", latest.status().message()));
  }
  std::error_code error;
  fs::create_directories(config_.training.output_dir, error);
  if (error) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create training.output_dir ", config_.training.output_dir, ": ", error.message()));
  }
  return absl::OkStatus();
}

absl::Status Run::setup() {
  if (absl::Status status = validate_config(config_); !status.ok()) return status;
  std::shared_ptr<Communicator> world = options_.world;
  if (!world) world = distributed_initialized() ? world_communicator() : std::make_shared<LocalCommunicator>();
  if (world->size() > 1 && config_.training.device != "cpu") {
    return absl::UnimplementedError(absl::StrCat(
        "training.device ", config_.training.device, " with ", world->size(),
        " processes: multi-process training runs on CPU processes over MPI today (the NCCL communicator is "
        "compiled but not yet wired into the trainer); use training.device: cpu or one process"));
  }
  // Before the splits: every group inherits the world's timeout.
  world->set_timeout_seconds(config_.parallel.collective_timeout_s);
  const ParallelConfig& parallel = config_.parallel;
  absl::StatusOr<ProcessGroups> groups = make_process_groups(
      {.tensor = parallel.tensor, .context = parallel.context, .data = parallel.data, .pipeline = parallel.pipeline,
       .expert = parallel.expert, .expert_tensor = parallel.expert_tensor},
      config_.model.moe.num_experts, world);
  if (!groups.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(groups.status().message(), " (the job has ", world->size(),
                                                   " processes: set parallel.data so that the sizes multiply to it)"));
  }
  groups_ = *groups;

  // Each rank checks its inputs; then all agree, so that no rank goes on into collectives
  // that a failed rank will never join.
  absl::Status status = setup_rank();
  Tensor failed = Tensor::from_vector(std::vector<int64_t>{status.ok() ? 0 : 1}, {1}, DType::kI64);
  groups_.world->all_reduce(failed, ReduceOp::kSum);
  const int64_t failures = failed.to_vector<int64_t>()[0];
  if (!status.ok()) return status;
  if (failures > 0) {
    return absl::AbortedError(absl::StrCat(failures, " other rank(s) failed during setup (their message is above)"));
  }
  if (std::string differs = check_parameters_identical(replicas_, groups_); !differs.empty()) {
    return absl::InternalError(absl::StrCat("replicas start from different parameters: ", differs));
  }
  return absl::OkStatus();
}

absl::Status Run::setup_rank() {
  config_yaml_ = options_.config_yaml.empty() ? config_to_yaml(config_) : options_.config_yaml;
  if (config_.training.device == "cuda") {
    device_ = Device::CUDA(0);
  } else if (config_.training.device != "cpu") {
    return absl::InvalidArgumentError(
        absl::StrCat("training.device must be cpu or cuda, got '", config_.training.device, "'"));
  }

  // Everything that can be wrong with the inputs is checked before anything is written.
  absl::StatusOr<Tokenizer> tokenizer = Tokenizer::load(config_.data.tokenizer);
  if (!tokenizer.ok()) return tokenizer.status();
  if (tokenizer->vocab_size() > config_.model.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model.vocab_size (", config_.model.vocab_size, ") is smaller than the tokenizer's vocabulary (",
        tokenizer->vocab_size(), " in ", config_.data.tokenizer, ")"));
  }
  plan_ = {.skip_samples = config_.training.skip_samples,
           .data_rank = groups_.coordinates().data,
           .data_size = config_.parallel.data,
           .micro_batch_size = config_.training.micro_batch_size,
           .accumulation = config_.gradient_accumulation_steps(),
           .global_batch_size = config_.training.global_batch_size};
  // The sample index covers the skipped samples too, so that (within one epoch) a run that
  // skips S samples reads the ones a run of S samples did not reach.
  const int64_t train_samples =
      config_.training.skip_samples + config_.training.steps * config_.training.global_batch_size;
  const int64_t valid_samples = config_.training.eval_batches * config_.training.micro_batch_size;
  absl::StatusOr<std::shared_ptr<SampleSource>> train_data = build_dataset(config_.data, Split::kTrain, train_samples);
  if (!train_data.ok()) return train_data.status();
  train_loader_ = std::make_unique<Loader>(*train_data, config_.training.micro_batch_size);
  if (config_.training.eval_batches > 0) {
    absl::StatusOr<std::shared_ptr<SampleSource>> valid_data =
        build_dataset(config_.data, Split::kValid, valid_samples);
    if (!valid_data.ok()) return valid_data.status();
    valid_loader_ = std::make_unique<Loader>(*valid_data, config_.training.micro_batch_size);
  }
  if (first_rank()) {  // reported by rank 0 only
    absl::StatusOr<double> entropy = unigram_entropy(config_.data);
    if (!entropy.ok()) return entropy.status();
    unigram_entropy_ = *entropy;
  }

  if (absl::Status status = prepare_output(); !status.ok()) return status;

  manual_seed(config_.training.seed);
  // Every rank builds the same model from the same seed (expert layers only their experts).
  model_ = std::make_unique<Transformer>(
      config_.model, MoeParallel{.expert = groups_.expert, .balance = groups_.data_context,
                                 .overlap_chunks = config_.parallel.overlap_chunks});
  if (device_ != Device::CPU()) model_->to(device_);
  model_->set_recompute(config_.training.recompute);
  optimizer_ = make_optimizer(config_.optimizer, model_->named_parameters());
  for (auto& [name, parameter] : model_->named_parameters()) {
    parameters_.push_back({.name = name, .tensor = parameter, .expert = is_expert_parameter(name)});
  }
  reducer_ = std::make_unique<GradientReducer>(parameters_, groups_, config_.parallel.grad_bucket_mb);
  // What must agree across replicas: the parameters and the persistent buffers (the routers'
  // expert bias moves by job-wide counts, so it must stay identical too).
  replicas_ = parameters_;
  for (auto& [name, buffer] : model_->named_buffers()) {
    replicas_.push_back({.name = name, .tensor = buffer, .expert = false});
  }
  state_.rng = default_generator().state();

  if (options_.resume) {
    absl::StatusOr<std::string> directory = resolve_checkpoint(checkpoint_root_);
    if (!directory.ok()) return directory.status();
    absl::StatusOr<TrainState> loaded = load_checkpoint(*directory, *model_, optimizer_.get(), checkpoint_rank());
    if (!loaded.ok()) return loaded.status();
    state_ = *loaded;
    default_generator().set_state(state_.rng);
    if (first_rank()) {
      absl::Status dropped = drop_metrics_after(fs::path(config_.training.output_dir) / "metrics.jsonl", state_.step);
      if (!dropped.ok()) return dropped;
    }
  } else if (!config_.checkpoint.load.empty()) {
    // Initial weights only (e.g. an upcycled model): fresh optimizer, step 0.
    absl::StatusOr<std::string> directory = resolve_checkpoint(config_.checkpoint.load);
    if (!directory.ok()) return directory.status();
    absl::StatusOr<TrainState> loaded = load_checkpoint(*directory, *model_, nullptr, checkpoint_rank());
    if (!loaded.ok()) return loaded.status();
  }

  if (first_rank()) {  // the other ranks write checkpoint shards only
    absl::StatusOr<std::unique_ptr<MetricsWriter>> metrics = MetricsWriter::open(config_.training.output_dir, config_.logging);
    if (!metrics.ok()) return metrics.status();
    metrics_ = std::move(*metrics);
    std::ofstream out(fs::path(config_.training.output_dir) / "config.yaml");
    out << config_yaml_;
  }

  flops_ = count_flops(config_.model, config_.data.seq_length);
  peak_flops_ = config_.training.peak_flops > 0 ? config_.training.peak_flops : measure_peak_flops(device_);
  return absl::OkStatus();
}

// The validation batches are dealt round-robin over the data-parallel ranks. Every rank runs
// the same number of forwards (expert parallelism makes each forward collective): a rank
// past the last batch repeats one with weight zero.
double Run::evaluate() {
  if (!valid_loader_) return std::numeric_limits<double>::quiet_NaN();
  model_->eval();
  NoGradGuard no_grad;
  const int64_t batches = config_.training.eval_batches, ranks = plan_.data_size;
  double total = 0;
  for (int64_t round = 0; round < (batches + ranks - 1) / ranks; ++round) {
    const int64_t batch_index = round * ranks + plan_.data_rank;
    Batch batch = valid_loader_->batch((batch_index % batches) * config_.training.micro_batch_size);
    ModelOutput output = model_->forward(batch.tokens.to(device_), batch.targets.to(device_));
    if (batch_index < batches) total += output.lm_loss.item();
  }
  model_->train();
  Tensor sum = Tensor::from_vector(std::vector<double>{total}, {1}, DType::kF64);
  groups_.data->all_reduce(sum, ReduceOp::kSum);
  return sum.to_vector<double>()[0] / static_cast<double>(batches);
}

// The job's view of a step: losses averaged over the data-parallel ranks (each a mean over
// its own tokens), expert loads and drops summed. One all-reduce.
void Run::reduce_over_data_ranks(double* lm_loss, double* aux_loss, std::vector<LayerTotals>* layers) const {
  const std::shared_ptr<Communicator>& group = groups_.data_context;
  if (group->size() == 1) return;
  std::vector<double> values = {*lm_loss, *aux_loss};
  for (const LayerTotals& totals : *layers) {
    values.insert(values.end(), {totals.load_balance, totals.sequence_load_balance, totals.global_load_balance,
                                 totals.z_loss, static_cast<double>(totals.dropped)});
    const std::vector<double> counts = totals.tokens_per_expert.to_vector<double>();
    values.insert(values.end(), counts.begin(), counts.end());
  }
  Tensor packed = Tensor::from_vector(values, {static_cast<int64_t>(values.size())}, DType::kF64);
  group->all_reduce(packed, ReduceOp::kSum);
  values = packed.to_vector<double>();
  const double ranks = static_cast<double>(group->size());
  size_t at = 0;
  *lm_loss = values[at++] / ranks;
  *aux_loss = values[at++] / ranks;
  for (LayerTotals& totals : *layers) {
    totals.load_balance = values[at++] / ranks;
    totals.sequence_load_balance = values[at++] / ranks;
    totals.global_load_balance = values[at++] / ranks;
    totals.z_loss = values[at++] / ranks;
    totals.dropped = static_cast<int64_t>(values[at++]);
    const int64_t E = totals.tokens_per_expert.numel();
    totals.tokens_per_expert = Tensor::from_vector(std::vector<double>(values.begin() + at, values.begin() + at + E),
                                                   {E}, DType::kF64);
    at += E;
  }
}

CheckpointRank Run::checkpoint_rank() const {
  CheckpointRank rank{.groups = &groups_};
  for (const ParameterShard& shard : model_->parameter_shards()) {
    rank.shards[shard.name] = TensorBox{.global_shape = shard.global_shape, .offsets = shard.offsets};
  }
  return rank;
}

Scalars Run::step_scalars(int64_t step, double lm_loss, double aux_loss, double grad_norm, double lr,
                          double tokens_per_second, double mfu, const std::vector<LayerTotals>& layers) const {
  Scalars scalars = {{"train/loss", lm_loss + aux_loss}, {"train/lm_loss", lm_loss},
                     {"train/aux_loss", aux_loss},       {"train/grad_norm", grad_norm},
                     {"train/lr", lr},                   {"perf/tokens_per_second", tokens_per_second},
                     {"perf/mfu", mfu},                  {"train/consumed_samples", static_cast<double>(state_.consumed_samples)}};
  std::vector<MoeLayer*> moe_layers = model_->moe_layers();
  int64_t moe_index = 0;
  for (int64_t layer = 0; layer < config_.model.num_layers; ++layer) {
    if (!config_.model.is_moe_layer(layer)) continue;
    const LayerTotals& totals = layers[moe_index++];
    const std::string prefix = absl::StrCat("moe/layer", layer, "/");
    const MoeConfig& moe = config_.model.moe;
    if (moe.load_balance_coeff > 0) scalars.push_back({prefix + "load_balance_loss", totals.load_balance});
    if (moe.sequence_load_balance_coeff > 0) {
      scalars.push_back({prefix + "sequence_load_balance_loss", totals.sequence_load_balance});
    }
    if (moe.global_load_balance_coeff > 0) {
      scalars.push_back({prefix + "global_load_balance_loss", totals.global_load_balance});
    }
    if (moe.z_loss_coeff > 0) scalars.push_back({prefix + "z_loss", totals.z_loss});
    std::vector<double> load = totals.tokens_per_expert.to_vector<double>();
    double mean = 0, square = 0;
    for (double count : load) mean += count / load.size();
    for (double count : load) square += (count - mean) * (count - mean) / load.size();
    scalars.push_back({prefix + "load_min", *std::min_element(load.begin(), load.end())});
    scalars.push_back({prefix + "load_max", *std::max_element(load.begin(), load.end())});
    scalars.push_back({prefix + "load_cv", mean > 0 ? std::sqrt(square) / mean : 0.0});
    scalars.push_back({prefix + "dropped", static_cast<double>(totals.dropped)});
  }
  (void)step;
  return scalars;
}

absl::Status Run::save(int64_t step) {
  absl::Status status = save_checkpoint(checkpoint_root_, *model_, *optimizer_, state_, config_yaml_,
                                        config_.checkpoint.keep_last_n, checkpoint_rank());
  if (status.ok()) print(absl::StrFormat("checkpoint: step %d saved under %s", step, checkpoint_root_));
  return status;
}

absl::StatusOr<TrainSummary> Run::loop() {
  const TrainingConfig& training = config_.training;
  TrainSummary summary;
  summary.first_step = state_.step;
  summary.unigram_entropy = unigram_entropy_;
  summary.valid_loss = std::numeric_limits<double>::quiet_NaN();
  print(absl::StrFormat("train: %s", groups_.layout.describe()));
  print(absl::StrFormat(
      "train: %d parameters (%d active), %.3g training FLOPs/token, peak %.3g FLOP/s, unigram entropy %.4f nats/token",
      flops_.total_parameters, flops_.active_parameters, flops_.training_flops_per_token, peak_flops_, unigram_entropy_));
  if (state_.step > 0) print(absl::StrFormat("train: resumed at step %d", state_.step));

  SignalScope signals;
  std::vector<double> speeds, utilizations;
  const int64_t tokens_per_step = training.global_batch_size * config_.data.seq_length;
  const double accumulation = static_cast<double>(plan_.accumulation);
  std::vector<MoeLayer*> moe_layers = model_->moe_layers();
  model_->train();

  while (state_.step < training.steps) {
    const int64_t step = state_.step;
    auto start = Clock::now();
    for (MoeLayer* layer : moe_layers) layer->reset_step_counts();
    std::vector<LayerTotals> layers(moe_layers.size());
    double lm_loss = 0, aux_loss = 0;
    for (int64_t micro = 0; micro < plan_.accumulation; ++micro) {
      // Only the last micro-batch's backward reduces: its buckets start as they fill.
      reducer_->set_sync(micro + 1 == plan_.accumulation);
      Batch batch = train_loader_->batch(plan_.first_sample(state_.consumed_samples, micro));
      ModelOutput output = model_->forward(batch.tokens.to(device_), batch.targets.to(device_));
      (output.loss * (1.0 / accumulation)).backward();
      lm_loss += output.lm_loss.item() / accumulation;
      if (output.aux_loss.defined()) aux_loss += output.aux_loss.item() / accumulation;
      for (size_t index = 0; index < layers.size(); ++index) {
        const MoeLayerStats& stats = output.moe_layers[index];
        LayerTotals& totals = layers[index];
        totals.load_balance += value_or_zero(stats.load_balance_loss) / accumulation;
        totals.sequence_load_balance += value_or_zero(stats.sequence_load_balance_loss) / accumulation;
        totals.global_load_balance += value_or_zero(stats.global_load_balance_loss) / accumulation;
        totals.z_loss += value_or_zero(stats.z_loss) / accumulation;
        Tensor counts = stats.tokens_per_expert.to(Device::CPU()).to(DType::kF64);
        totals.tokens_per_expert = totals.tokens_per_expert.defined() ? totals.tokens_per_expert + counts : counts;
        totals.dropped += stats.dropped;
      }
    }
    reducer_->finish();
    reduce_over_data_ranks(&lm_loss, &aux_loss, &layers);
    if (options_.on_gradients) {
      options_.on_gradients({.step = step, .lm_loss = lm_loss, .aux_loss = aux_loss, .model = model_.get()});
    }
    const double grad_norm = clip_global_grad_norm(parameters_, groups_, config_.optimizer.grad_clip);
    const double lr = learning_rate(config_.schedule, config_.optimizer.lr, config_.optimizer.min_lr_ratio, step,
                                    training.steps);
    optimizer_->step(lr);
    optimizer_->zero_grad();
    for (MoeLayer* layer : moe_layers) {
      if (config_.model.moe.expert_bias) layer->router().update_expert_bias(layer->step_tokens_per_expert());
    }
    state_.step = step + 1;
    state_.consumed_samples += training.global_batch_size;
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    state_.wall_seconds += seconds;
    const double tokens_per_second = tokens_per_step / seconds;
    const double mfu = tokens_per_second * flops_.training_flops_per_token /
                       (peak_flops_ * static_cast<double>(groups_.world->size()));
    speeds.push_back(tokens_per_second);
    utilizations.push_back(mfu);
    summary.last_train_loss = lm_loss;
    if (!std::isfinite(lm_loss)) {
      return absl::InternalError(absl::StrFormat("training diverged: LM loss %g at step %d (lower optimizer.lr?)",
                                                 lm_loss, state_.step));
    }

    if (metrics_ && (state_.step % std::max<int64_t>(1, training.log_interval) == 0 || state_.step == training.steps)) {
      metrics_->log(state_.step,
                    step_scalars(state_.step, lm_loss, aux_loss, grad_norm, lr, tokens_per_second, mfu, layers));
    }
    const double remaining = (training.steps - state_.step) * tokens_per_step / median(speeds);
    if (metrics_) metrics_->progress(absl::StrFormat(
        "step %d/%d | loss %.4f | lm %.4f | aux %.4f | gnorm %.3f | lr %.2e | %.0f tok/s | MFU %.1f%% | eta %.0fs",
        state_.step, training.steps, lm_loss + aux_loss, lm_loss, aux_loss, grad_norm, lr, tokens_per_second,
        100 * mfu, remaining));

    const bool last = state_.step == training.steps;
    if ((training.eval_interval > 0 && state_.step % training.eval_interval == 0) || last) {
      summary.valid_loss = evaluate();
      if (std::isfinite(summary.valid_loss) && metrics_) {
        metrics_->log(state_.step, {{"valid/lm_loss", summary.valid_loss},
                                    {"valid/perplexity", std::exp(summary.valid_loss)}});
        metrics_->print(absl::StrFormat("eval: step %d | valid loss %.4f | perplexity %.2f | unigram entropy %.4f",
                                        state_.step, summary.valid_loss, std::exp(summary.valid_loss),
                                        unigram_entropy_));
      }
    }
    // A signal may reach the ranks at different steps: they stop together at the first step
    // after any rank saw it.
    Tensor stop_flags = Tensor::from_vector(std::vector<int64_t>{stop_signal.load()}, {1}, DType::kI64);
    groups_.world->all_reduce(stop_flags, ReduceOp::kMax);
    const int signal = static_cast<int>(stop_flags.to_vector<int64_t>()[0]);
    const bool stop = signal != 0 || (options_.stop_at_step >= 0 && state_.step >= options_.stop_at_step);
    if (last || stop || (config_.checkpoint.interval > 0 && state_.step % config_.checkpoint.interval == 0)) {
      state_.rng = default_generator().state();
      if (absl::Status status = save(state_.step); !status.ok()) return status;
    }
    if (stop && !last) {
      summary.interrupted = true;
      summary.signal = signal;
      print(absl::StrFormat("train: stopped after step %d%s; continue with --resume", state_.step,
                                      signal ? absl::StrCat(" by signal ", signal) : std::string()));
      break;
    }
  }
  if (metrics_) metrics_->flush();
  if (std::string differs = check_parameters_identical(replicas_, groups_); !differs.empty()) {
    return absl::InternalError(absl::StrCat("replicas diverged during training: ", differs));
  }
  summary.last_step = state_.step;
  summary.tokens_per_second = median(speeds);
  summary.mfu = median(utilizations);
  if (!summary.interrupted && first_rank()) {
    nlohmann::json result = {{"step", summary.last_step},
                             {"train_lm_loss", summary.last_train_loss},
                             {"valid_lm_loss", summary.valid_loss},
                             {"unigram_entropy", summary.unigram_entropy},
                             {"tokens_per_second", summary.tokens_per_second},
                             {"mfu", summary.mfu},
                             {"total_parameters", flops_.total_parameters},
                             {"active_parameters", flops_.active_parameters},
                             {"training_flops_per_token", flops_.training_flops_per_token}};
    std::ofstream out(fs::path(config_.training.output_dir) / "result.json");
    out << result.dump(2) << "\n";
  }
  return summary;
}

}  // namespace

absl::StatusOr<TrainSummary> train(const TrainConfig& config, const TrainOptions& options) {
  Run run(config, options);
  if (absl::Status status = run.setup(); !status.ok()) return status;
  return run.loop();
}

}  // namespace sy
