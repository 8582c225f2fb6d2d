// Training checkpoints: bit-identical round trips, keep_last_n, the latest pointer, saves killed
// midway, and refusals (truncated, missing, mismatched) that leave the model as it was.
#include "launch/checkpoint.h"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/autograd/grad_mode.h"
#include "core/ops/ops.h"
#include "launch/proto/checkpoint.pb.h"
#include "moe/model.h"
#include "tests/support/scratch_directory.h"

namespace sy {
namespace {

namespace fs = std::filesystem;

// V 32, C 16, L 2, H 2; MoE layers of E experts top-2 with the aux-loss-free expert bias
// (a persistent buffer, so checkpoints must carry it). E 0 gives the dense model.
ModelConfig tiny_config(int64_t experts, uint64_t seed) {
  ModelConfig config;
  config.vocab_size = 32;
  config.hidden_size = 16;
  config.num_layers = 2;
  config.num_heads = 2;
  config.num_kv_heads = 2;
  config.ffn_size = 32;
  config.max_seq_len = 8;
  config.seed = seed;
  config.moe.num_experts = experts;
  config.moe.top_k = 2;
  config.moe.expert_ffn_size = 8;
  config.moe.expert_bias = experts > 0;
  return config;
}

// A model and its AdamW after `steps` training steps, so the optimizer holds real state.
struct Trained {
  std::unique_ptr<Transformer> model;
  std::unique_ptr<Optimizer> optimizer;
};

Trained train(const ModelConfig& config, int steps) {
  Trained trained;
  trained.model = std::make_unique<Transformer>(config);
  trained.optimizer = make_optimizer(OptimizerConfig{}, trained.model->named_parameters());
  for (int step = 0; step < steps; ++step) {
    std::vector<int64_t> tokens(2 * 8), targets(2 * 8);
    for (size_t i = 0; i < tokens.size(); ++i) {
      tokens[i] = static_cast<int64_t>((i * 7 + 3 * step) % 32);
      targets[i] = static_cast<int64_t>((i * 5 + 1) % 32);
    }
    ModelOutput output = trained.model->forward(Tensor::from_vector(tokens, {2, 8}, DType::kI64),
                                                Tensor::from_vector(targets, {2, 8}, DType::kI64));
    output.loss.backward();
    trained.optimizer->step(1e-2);
    trained.optimizer->zero_grad();
  }
  // The expert bias moves after steps in training; give it values a reload must reproduce.
  for (auto& [name, tensor] : trained.model->named_buffers()) {
    if (name.find("expert_bias") != std::string::npos) {
      NoGradGuard no_grad;
      tensor.copy_(Tensor::full(tensor.shape(), 0.125 * static_cast<double>(steps)));
    }
  }
  return trained;
}

// Every tensor's bytes, by name: equal means bit-identical.
std::map<std::string, std::string> bytes_of(const StateDict& state) {
  std::map<std::string, std::string> bytes;
  for (const auto& [name, tensor] : state) {
    Tensor host = tensor.detach().to(Device::CPU()).contiguous();
    bytes[name] = std::string(static_cast<const char*>(host.data_ptr()), host.nbytes());
  }
  return bytes;
}

TrainState sample_state(int64_t step) {
  TrainState state;
  state.step = step;
  state.consumed_samples = step * 16 + 3;
  state.rng = {1234, 0x123456789abcdefull + static_cast<uint64_t>(step)};
  state.wall_seconds = 12.345678901234567 * static_cast<double>(step + 1);
  return state;
}

std::set<std::string> entries_of(const std::string& directory) {
  std::set<std::string> names;
  for (const auto& entry : fs::directory_iterator(directory)) names.insert(entry.path().filename().string());
  return names;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class Checkpoint : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(scratch_.ok()); }
  std::string root() const { return scratch_.file("checkpoints"); }
  std::string step_dir(int64_t step) const {
    char name[32];
    std::snprintf(name, sizeof(name), "step_%08lld", static_cast<long long>(step));
    return root() + "/" + name;
  }
  testing::ScratchDirectory scratch_{"sy_checkpoint"};
};

TEST_F(Checkpoint, RoundTripIsBitIdenticalForWeightsBuffersOptimizerAndTrainState) {
  Trained source = train(tiny_config(4, 1), 3);
  const std::string yaml = "model:\n  hidden_size: 16\n";
  ASSERT_TRUE(save_checkpoint(root(), *source.model, *source.optimizer, sample_state(3), yaml, 3).ok());
  EXPECT_EQ(entries_of(step_dir(3)),
            (std::set<std::string>{"config.yaml", "manifest.pb", "model.safetensors", "optimizer.safetensors"}));

  // A model from another seed, and its optimizer after one step of its own.
  Trained target = train(tiny_config(4, 2), 1);
  ASSERT_NE(bytes_of(target.model->state_dict()), bytes_of(source.model->state_dict()));
  absl::StatusOr<std::string> directory = resolve_checkpoint(root());
  ASSERT_TRUE(directory.ok()) << directory.status();
  EXPECT_EQ(*directory, step_dir(3));
  absl::StatusOr<TrainState> state = load_checkpoint(*directory, *target.model, target.optimizer.get());
  ASSERT_TRUE(state.ok()) << state.status();

  const StateDict model_state = target.model->state_dict();
  EXPECT_TRUE(model_state.count("layers.0.mlp.gate.expert_bias"));
  EXPECT_EQ(bytes_of(model_state), bytes_of(source.model->state_dict()));
  EXPECT_EQ(bytes_of(target.optimizer->state_dict()), bytes_of(source.optimizer->state_dict()));
  EXPECT_EQ(target.optimizer->step_count(), 3);
  const TrainState expected = sample_state(3);
  EXPECT_EQ(state->step, expected.step);
  EXPECT_EQ(state->consumed_samples, expected.consumed_samples);
  EXPECT_EQ(state->rng, expected.rng);
  EXPECT_EQ(std::memcmp(&state->wall_seconds, &expected.wall_seconds, sizeof(double)), 0);
  absl::StatusOr<std::string> config = read_checkpoint_config(*directory);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(*config, yaml);

  // Weights only (optimizer null) also loads.
  Trained weights_only = train(tiny_config(4, 5), 0);
  ASSERT_TRUE(load_checkpoint(*directory, *weights_only.model, nullptr).ok());
  EXPECT_EQ(bytes_of(weights_only.model->state_dict()), bytes_of(source.model->state_dict()));
}

TEST_F(Checkpoint, ManifestListsEveryTensorWithShapeDtypeWholeShardAndTheLayout) {
  Trained source = train(tiny_config(4, 1), 1);
  ASSERT_TRUE(save_checkpoint(root(), *source.model, *source.optimizer, sample_state(1), "", 0).ok());
  checkpoint::Manifest manifest;
  ASSERT_TRUE(manifest.ParseFromString(slurp(step_dir(1) + "/manifest.pb")));
  EXPECT_EQ(manifest.format_version(), 1u);
  EXPECT_EQ(manifest.step(), 1);
  EXPECT_EQ(manifest.consumed_samples(), sample_state(1).consumed_samples);
  EXPECT_EQ(manifest.layout().world_size(), 1);
  EXPECT_EQ(manifest.layout().expert(), 1);
  const StateDict model_state = source.model->state_dict();
  ASSERT_EQ(manifest.model_tensors_size(), static_cast<int>(model_state.size()));
  for (const checkpoint::TensorEntry& entry : manifest.model_tensors()) {
    ASSERT_TRUE(model_state.count(entry.name())) << entry.name();
    const Tensor& tensor = model_state.at(entry.name());
    EXPECT_EQ(Shape(entry.shape().begin(), entry.shape().end()), tensor.shape()) << entry.name();
    EXPECT_EQ(entry.dtype(), "F32") << entry.name();
    ASSERT_EQ(entry.shards_size(), 1);
    EXPECT_EQ(entry.shards(0).file(), "model.safetensors");
    EXPECT_EQ(Shape(entry.shards(0).sizes().begin(), entry.shards(0).sizes().end()), tensor.shape());
    EXPECT_EQ(entry.shards(0).offsets_size(), static_cast<int>(tensor.dim()));
  }
  EXPECT_EQ(manifest.optimizer_tensors_size(), static_cast<int>(source.optimizer->state_dict().size()));
  std::map<std::string, uint64_t> sizes;
  for (const auto& file : manifest.files()) sizes[file.name()] = file.size();
  EXPECT_EQ(sizes.size(), 3u);
  EXPECT_EQ(sizes["model.safetensors"], fs::file_size(step_dir(1) + "/model.safetensors"));
}

TEST_F(Checkpoint, KeepLastNDeletesTheOldestSteps) {
  Trained source = train(tiny_config(4, 1), 1);
  for (int64_t step : {10, 20, 30, 40, 50}) {
    ASSERT_TRUE(save_checkpoint(root(), *source.model, *source.optimizer, sample_state(step), "", 2).ok());
  }
  EXPECT_EQ(entries_of(root()), (std::set<std::string>{"latest", "step_00000040", "step_00000050"}));
  // 0 keeps every step.
  for (int64_t step : {60, 70, 80}) {
    ASSERT_TRUE(save_checkpoint(root(), *source.model, *source.optimizer, sample_state(step), "", 0).ok());
  }
  EXPECT_EQ(entries_of(root()).size(), 6u);
  // The one just saved is kept even when its step is not the highest (a run resumed earlier).
  ASSERT_TRUE(save_checkpoint(root(), *source.model, *source.optimizer, sample_state(5), "", 1).ok());
  EXPECT_EQ(entries_of(root()), (std::set<std::string>{"latest", "step_00000005"}));
}

TEST_F(Checkpoint, LatestNamesTheLastSaveAndResolveFollowsIt) {
  Trained source = train(tiny_config(4, 1), 1);
  absl::StatusOr<std::string> resolved = resolve_checkpoint(root());
  EXPECT_EQ(resolved.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(resolved.status().message().find(root()), std::string::npos) << resolved.status();
  fs::create_directories(root());
  resolved = resolve_checkpoint(root());
  EXPECT_EQ(resolved.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(resolved.status().message().find("latest"), std::string::npos) << resolved.status();

  ASSERT_TRUE(save_checkpoint(root(), *source.model, *source.optimizer, sample_state(100), "", 3).ok());
  EXPECT_EQ(slurp(root() + "/latest"), "step_00000100\n");
  ASSERT_TRUE(save_checkpoint(root(), *source.model, *source.optimizer, sample_state(200), "", 3).ok());
  EXPECT_EQ(slurp(root() + "/latest"), "step_00000200\n");
  resolved = resolve_checkpoint(root());
  ASSERT_TRUE(resolved.ok()) << resolved.status();
  EXPECT_EQ(*resolved, step_dir(200));
  // A step directory resolves to itself.
  resolved = resolve_checkpoint(step_dir(100));
  ASSERT_TRUE(resolved.ok()) << resolved.status();
  EXPECT_EQ(*resolved, step_dir(100));
  // latest naming a directory that is gone.
  fs::remove_all(step_dir(200));
  resolved = resolve_checkpoint(root());
  EXPECT_EQ(resolved.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(resolved.status().message().find("step_00000200"), std::string::npos) << resolved.status();
}

TEST_F(Checkpoint, SavingAnExistingStepReplacesItCompletely) {
  Trained first = train(tiny_config(4, 1), 1);
  Trained second = train(tiny_config(4, 2), 2);
  ASSERT_TRUE(save_checkpoint(root(), *first.model, *first.optimizer, sample_state(7), "first", 3).ok());
  ASSERT_TRUE(save_checkpoint(root(), *second.model, *second.optimizer, sample_state(7), "second", 3).ok());
  EXPECT_EQ(entries_of(root()), (std::set<std::string>{"latest", "step_00000007"}));
  Trained target = train(tiny_config(4, 3), 1);
  ASSERT_TRUE(load_checkpoint(step_dir(7), *target.model, target.optimizer.get()).ok());
  EXPECT_EQ(bytes_of(target.model->state_dict()), bytes_of(second.model->state_dict()));
  EXPECT_EQ(target.optimizer->step_count(), 2);
  EXPECT_EQ(*read_checkpoint_config(step_dir(7)), "second");
}

// A save killed midway (here: a partial hidden directory, as one leaves it) is invisible to
// resolve and load, and the next save removes it.
TEST_F(Checkpoint, LeftoversOfAKilledSaveAreIgnoredThenCleaned) {
  Trained source = train(tiny_config(4, 1), 1);
  ASSERT_TRUE(save_checkpoint(root(), *source.model, *source.optimizer, sample_state(10), "", 3).ok());
  const std::string partial = root() + "/.step_00000020.tmp-99999";
  fs::create_directories(partial);
  fs::copy_file(step_dir(10) + "/model.safetensors", partial + "/model.safetensors");
  fs::resize_file(partial + "/model.safetensors", 100);
  std::ofstream(root() + "/latest.tmp-99999") << "step_00000020";

  absl::StatusOr<std::string> resolved = resolve_checkpoint(root());
  ASSERT_TRUE(resolved.ok()) << resolved.status();
  EXPECT_EQ(*resolved, step_dir(10));
  Trained target = train(tiny_config(4, 2), 1);
  ASSERT_TRUE(load_checkpoint(*resolved, *target.model, target.optimizer.get()).ok());
  EXPECT_EQ(bytes_of(target.model->state_dict()), bytes_of(source.model->state_dict()));

  ASSERT_TRUE(save_checkpoint(root(), *source.model, *source.optimizer, sample_state(30), "", 3).ok());
  EXPECT_EQ(entries_of(root()), (std::set<std::string>{"latest", "step_00000010", "step_00000030"}));
}

// A real kill: a forked child saves under a file-size limit, so the kernel kills it (SIGXFSZ)
// in the middle of writing model.safetensors. The previous checkpoint stays loadable.
TEST_F(Checkpoint, ASaveKilledWhileWritingLeavesThePreviousCheckpointLoadable) {
  Trained old_model = train(tiny_config(4, 1), 1);
  Trained new_model = train(tiny_config(4, 2), 2);
  ASSERT_TRUE(save_checkpoint(root(), *old_model.model, *old_model.optimizer, sample_state(10), "old", 3).ok());
  const std::string latest_before = slurp(root() + "/latest");
  ASSERT_GT(fs::file_size(step_dir(10) + "/model.safetensors"), 8192u);

  GTEST_FLAG_SET(death_test_style, "fast");  // fork without re-running: the child shares root()
  auto save_under_a_file_size_limit = [&] {
    rlimit no_core{0, 0};
    rlimit small_files{4096, 4096};
    setrlimit(RLIMIT_CORE, &no_core);
    setrlimit(RLIMIT_FSIZE, &small_files);
    (void)save_checkpoint(root(), *new_model.model, *new_model.optimizer, sample_state(20), "new", 3);
    std::_Exit(0);  // not reached: the write past the limit kills the child
  };
  EXPECT_EXIT(save_under_a_file_size_limit(), ::testing::KilledBySignal(SIGXFSZ), "");

  bool partial_left = false;
  for (const std::string& name : entries_of(root())) partial_left |= name.rfind(".step_00000020.tmp-", 0) == 0;
  EXPECT_TRUE(partial_left) << "the child should have died inside its temporary directory";
  EXPECT_FALSE(fs::exists(step_dir(20)));
  EXPECT_EQ(slurp(root() + "/latest"), latest_before);
  absl::StatusOr<std::string> resolved = resolve_checkpoint(root());
  ASSERT_TRUE(resolved.ok()) << resolved.status();
  Trained target = train(tiny_config(4, 3), 1);
  absl::StatusOr<TrainState> state = load_checkpoint(*resolved, *target.model, target.optimizer.get());
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->step, 10);
  EXPECT_EQ(bytes_of(target.model->state_dict()), bytes_of(old_model.model->state_dict()));

  // The next save (unlimited) completes and sweeps the leftovers away.
  ASSERT_TRUE(save_checkpoint(root(), *new_model.model, *new_model.optimizer, sample_state(20), "new", 3).ok());
  EXPECT_EQ(entries_of(root()), (std::set<std::string>{"latest", "step_00000010", "step_00000020"}));
}

class CheckpointRefusal : public Checkpoint {
 protected:
  void SetUp() override {
    Checkpoint::SetUp();
    Trained source = train(tiny_config(4, 1), 2);
    ASSERT_TRUE(save_checkpoint(root(), *source.model, *source.optimizer, sample_state(2), "", 3).ok());
    target_ = train(tiny_config(4, 2), 1);
    model_before_ = bytes_of(target_.model->state_dict());
    optimizer_before_ = bytes_of(target_.optimizer->state_dict());
  }
  // Loads step 2 into target_, expecting a failure whose message contains every one of `parts`,
  // and checks that neither the model nor the optimizer changed.
  void expect_refused(Module& model, Optimizer* optimizer, const std::vector<std::string>& parts) {
    absl::StatusOr<TrainState> state = load_checkpoint(step_dir(2), model, optimizer);
    ASSERT_FALSE(state.ok());
    for (const std::string& part : parts) {
      EXPECT_NE(state.status().message().find(part), std::string::npos) << "want '" << part << "' in: " << state.status();
    }
    EXPECT_EQ(bytes_of(target_.model->state_dict()), model_before_);
    EXPECT_EQ(bytes_of(target_.optimizer->state_dict()), optimizer_before_);
  }
  Trained target_;
  std::map<std::string, std::string> model_before_, optimizer_before_;
};

TEST_F(CheckpointRefusal, TruncatedSafetensorsNamesTheFile) {
  const std::string path = step_dir(2) + "/model.safetensors";
  fs::resize_file(path, fs::file_size(path) / 2);
  expect_refused(*target_.model, target_.optimizer.get(), {path, "truncated"});
  const std::string optimizer_path = step_dir(2) + "/optimizer.safetensors";
  fs::resize_file(path, 0);
  fs::resize_file(optimizer_path, fs::file_size(optimizer_path) - 1);
  expect_refused(*target_.model, target_.optimizer.get(), {"safetensors", "bytes, the manifest says"});
}

TEST_F(CheckpointRefusal, MissingManifestOrFileIsNamed) {
  fs::remove(step_dir(2) + "/optimizer.safetensors");
  expect_refused(*target_.model, target_.optimizer.get(), {step_dir(2) + "/optimizer.safetensors", "missing"});
  fs::remove(step_dir(2) + "/manifest.pb");
  expect_refused(*target_.model, target_.optimizer.get(), {step_dir(2) + "/manifest.pb", "missing"});
  EXPECT_FALSE(resolve_checkpoint(step_dir(2)).ok());
}

TEST_F(CheckpointRefusal, DamagedManifestIsRefused) {
  std::ofstream(step_dir(2) + "/manifest.pb", std::ios::binary | std::ios::trunc) << "\xff\xff\xff not a manifest";
  expect_refused(*target_.model, target_.optimizer.get(), {"manifest.pb", "not a valid checkpoint manifest"});
}

TEST_F(CheckpointRefusal, WrongShapeNamesTheTensorAndBothShapes) {
  // Saved with 8 experts, loaded into a model of 4 (the router gate is (E, C)).
  Trained eight = train(tiny_config(8, 1), 1);
  fs::remove_all(root());
  ASSERT_TRUE(save_checkpoint(root(), *eight.model, *eight.optimizer, sample_state(2), "", 3).ok());
  expect_refused(*target_.model, target_.optimizer.get(),
                 {"checkpoint tensor layers.0.mlp.gate.weight has shape (8, 16), the model expects (4, 16)",
                  "layers.0.mlp.experts.w1 has shape (8, 16, 16), the model expects (4, 16, 16)"});
}

TEST_F(CheckpointRefusal, ADifferentModelIsRefusedNamingTheTensors) {
  Trained dense = train(tiny_config(0, 1), 1);
  fs::remove_all(root());
  ASSERT_TRUE(save_checkpoint(root(), *dense.model, *dense.optimizer, sample_state(2), "", 3).ok());
  expect_refused(*target_.model, target_.optimizer.get(),
                 {"does not match the model", "tensors the checkpoint lacks", "layers.0.mlp.experts.w1",
                  "tensors the model lacks", "layers.0.mlp.up_proj.weight"});
}

}  // namespace
}  // namespace sy
