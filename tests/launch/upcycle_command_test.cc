// `switchyard upcycle` end to end: a trained dense run upcycled and trained on starts at the
// dense model's loss; a Hugging Face safetensors + config.json input gives the same checkpoint
// as the Switchyard one; bad input exits 1 naming the problem and writes nothing.
#include "launch/upcycle_command.h"

#include <cmath>
#include <memory>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/autograd/grad_mode.h"
#include "core/io/safetensors.h"
#include "core/ops/ops.h"
#include "core/random.h"
#include "launch/checkpoint.h"
#include "launch/config.h"
#include "launch/trainer.h"
#include "moe/model.h"
#include "optim/optimizer.h"
#include "parallel/local_communicator.h"
#include "tests/launch/tiny_run_support.h"
#include "tests/support/mpi_test_world.h"
#include "tests/support/scratch_directory.h"

namespace sy::testing {
namespace {

namespace fs = std::filesystem;

std::string write_file(const fs::path& path, const std::string& text) {
  std::ofstream(path) << text;
  return path.string();
}

TrainConfig config_for(const std::string& yaml, const fs::path& output_dir, std::vector<std::string> overrides = {}) {
  overrides.push_back("training.output_dir=" + output_dir.string());
  absl::StatusOr<TrainConfig> config = parse_config(yaml, "upcycle_command_test.yaml", overrides);
  EXPECT_TRUE(config.ok()) << config.status();
  return *config;
}

// The LM loss of the first step of a run (its first batch, before any update); `world` null:
// the MPI world if it is up, else one process.
double first_loss(const TrainConfig& config, std::shared_ptr<Communicator> world = nullptr) {
  double loss = NAN;
  TrainOptions options;
  options.world = std::move(world);
  options.on_gradients = [&](const StepRecord& record) {
    if (record.step == 0) loss = record.lm_loss;
  };
  absl::StatusOr<TrainSummary> summary = train(config, options);
  EXPECT_TRUE(summary.ok()) << summary.status();
  return loss;
}

// Runs the command; returns {exit code, stderr}.
std::pair<int, std::string> upcycle_cli(const std::vector<std::string>& args) {
  ::testing::internal::CaptureStdout();
  ::testing::internal::CaptureStderr();
  const int code = run_upcycle(args);
  const std::string printed = ::testing::internal::GetCapturedStdout();
  std::string errors = ::testing::internal::GetCapturedStderr();
  if (code == 0) std::printf("%s", printed.c_str());
  return {code, errors};
}

// The tiny run's MoE (2 layers, the first dense; 4 experts top-2 of width 32 and a shared expert
// of 32) over a dense model of ffn_size 64: the shared expert takes units [0, 32), the routed
// experts copy [32, 64) (coarse) or, with expert_ffn_size 16, are its two slices (granular).
TEST(UpcycleCommand, TrainingFromTheUpcycledCheckpointStartsAtTheDenseLoss) {
  ScratchDirectory scratch("sy_upcycle_command");
  const std::string yaml = prepare_tiny_run(scratch.path());
  const std::string moe_yaml = write_file(scratch.path() / "moe.yaml", yaml);
  ASSERT_TRUE(train(config_for(yaml, scratch.path() / "dense", {"moe.num_experts=0", "training.steps=6"}), {}).ok());
  const std::string dense_checkpoint = (scratch.path() / "dense" / "checkpoints").string();

  const double dense_loss = first_loss(config_for(
      yaml, scratch.path() / "dense_more", {"moe.num_experts=0", "training.steps=2", "checkpoint.load=" + dense_checkpoint}));
  for (const std::string expert_width : {"32", "16"}) {
    const fs::path output = scratch.path() / ("moe_f" + expert_width);
    auto [code, errors] = upcycle_cli({"--dense", (scratch.path() / "dense").string(), "--config", moe_yaml, "--output", output.string(),
                                       "--set", "moe.expert_ffn_size=" + expert_width});
    ASSERT_EQ(code, 0) << errors;
    const double moe_loss = first_loss(config_for(
        yaml, scratch.path() / ("run_f" + expert_width),
        {"moe.expert_ffn_size=" + expert_width, "training.steps=2", "checkpoint.load=" + output.string()}));
    std::printf("  expert_ffn_size %s: first loss dense %.9g, upcycled %.9g (difference %.3g)\n",
                expert_width.c_str(), dense_loss, moe_loss, moe_loss - dense_loss);
    EXPECT_NEAR(moe_loss, dense_loss, 1e-5 * dense_loss) << "expert_ffn_size " << expert_width;
  }
}

// A dense model of the tiny run's shape with random weights, saved both ways.
struct DenseInputs {
  std::string checkpoint, safetensors, config_json;
  std::string hf_folder;  // config.json and the tensors split over two files, as large HF models are
};

DenseInputs write_dense_inputs(const fs::path& root, const std::string& yaml, bool hf_bf16 = false) {
  const TrainConfig config = config_for(yaml, root / "unused", {"moe.num_experts=0"});
  Transformer dense(config.model);
  {
    Generator generator(17);
    NoGradGuard no_grad;
    for (auto& [name, parameter] : dense.named_parameters()) normal_(parameter, 0.0, 0.1, &generator);
  }
  DenseInputs inputs;
  inputs.checkpoint = (root / "dense_checkpoints").string();
  const auto optimizer = make_optimizer(config.optimizer, dense.named_parameters());
  EXPECT_TRUE(save_checkpoint(inputs.checkpoint, dense, *optimizer, TrainState(), config_to_yaml(config), 0).ok());

  fs::create_directories(root / "hf");
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const auto& [name, tensor] : dense.state_dict()) {
    Tensor stored = hf_bf16 ? tensor.to(DType::kBF16) : tensor;
    tensors.emplace_back(name == "lm_head.weight" ? name : "model." + name, stored);
  }
  inputs.safetensors = (root / "hf" / "model.safetensors").string();
  EXPECT_TRUE(write_safetensors(inputs.safetensors, tensors).ok());
  const ModelConfig& m = config.model;
  inputs.config_json = write_file(
      root / "hf" / "config.json",
      "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_act\": \"silu\",\n"
      " \"hidden_size\": " + std::to_string(m.hidden_size) + ", \"intermediate_size\": " + std::to_string(m.ffn_size) +
      ",\n \"num_attention_heads\": " + std::to_string(m.num_heads) + ", \"num_key_value_heads\": " +
      std::to_string(m.num_kv_heads) + ",\n \"num_hidden_layers\": " + std::to_string(m.num_layers) +
      ", \"vocab_size\": " + std::to_string(m.vocab_size) +
      ",\n \"rope_theta\": 10000.0, \"rms_norm_eps\": 1e-06, \"tie_word_embeddings\": false,"
      " \"max_position_embeddings\": 4096, \"torch_dtype\": \"float32\"}\n");
  inputs.hf_folder = (root / "hf_split").string();
  fs::create_directories(inputs.hf_folder);
  fs::copy_file(inputs.config_json, fs::path(inputs.hf_folder) / "config.json");
  const size_t half = tensors.size() / 2;
  EXPECT_TRUE(write_safetensors(inputs.hf_folder + "/model-00001-of-00002.safetensors",
                                {tensors.begin(), tensors.begin() + static_cast<std::ptrdiff_t>(half)}).ok());
  EXPECT_TRUE(write_safetensors(inputs.hf_folder + "/model-00002-of-00002.safetensors",
                                {tensors.begin() + static_cast<std::ptrdiff_t>(half), tensors.end()}).ok());
  return inputs;
}

std::map<std::string, std::vector<float>> exported(const fs::path& checkpoint, const fs::path& file) {
  absl::StatusOr<std::string> directory = resolve_checkpoint(checkpoint.string());
  EXPECT_TRUE(directory.ok()) << directory.status();
  EXPECT_TRUE(export_checkpoint(*directory, file.string()).ok());
  absl::StatusOr<SafetensorsFile> read = read_safetensors(file.string());
  EXPECT_TRUE(read.ok()) << read.status();
  std::map<std::string, std::vector<float>> values;
  for (const auto& [name, tensor] : read->tensors) values[name] = tensor.to_vector<float>();
  return values;
}

TEST(UpcycleCommand, HuggingFaceFileOrFolderGivesTheSameCheckpointAsTheSwitchyardOne) {
  ScratchDirectory scratch("sy_upcycle_command");
  const std::string yaml = prepare_tiny_run(scratch.path());
  const std::string moe_yaml = write_file(scratch.path() / "moe.yaml", yaml);
  const DenseInputs inputs = write_dense_inputs(scratch.path(), yaml);
  const std::vector<std::string> common = {"--config", moe_yaml, "--set", "moe.expert_ffn_size=16", "--noise", "0.01",
                                           "--seed", "3"};
  auto run = [&](std::vector<std::string> args) {
    args.insert(args.end(), common.begin(), common.end());
    auto [code, errors] = upcycle_cli(args);
    EXPECT_EQ(code, 0) << errors;
  };
  run({"--dense", inputs.checkpoint, "--output", scratch.file("from_switchyard")});
  run({"--dense", inputs.safetensors, "--output", scratch.file("from_hf")});  // config.json found next to it
  run({"--dense", inputs.hf_folder, "--output", scratch.file("from_hf_folder")});
  const auto a = exported(scratch.path() / "from_switchyard", scratch.path() / "a.safetensors");
  const auto b = exported(scratch.path() / "from_hf", scratch.path() / "b.safetensors");
  const auto c = exported(scratch.path() / "from_hf_folder", scratch.path() / "c.safetensors");
  ASSERT_FALSE(a.empty());
  EXPECT_TRUE(a.count("layers.1.mlp.experts.w1"));
  EXPECT_EQ(a, b);
  EXPECT_EQ(a, c);
}

TEST(UpcycleCommand, BadInputExitsOneNamingTheProblemAndWritesNothing) {
  ScratchDirectory scratch("sy_upcycle_command");
  const std::string yaml = prepare_tiny_run(scratch.path());
  const std::string moe_yaml = write_file(scratch.path() / "moe.yaml", yaml);
  const DenseInputs inputs = write_dense_inputs(scratch.path(), yaml);
  const std::string output = scratch.file("out");
  auto expect_refused = [&](std::vector<std::string> args, const std::vector<std::string>& expected) {
    auto [code, errors] = upcycle_cli(args);
    EXPECT_EQ(code, 1) << errors;
    for (const std::string& part : expected) EXPECT_NE(errors.find(part), std::string::npos) << errors;
    EXPECT_FALSE(fs::exists(output));
    for (const auto& entry : fs::directory_iterator(scratch.path())) {
      EXPECT_NE(entry.path().filename().string().rfind(".out", 0), 0u) << "leftover " << entry.path();
    }
  };
  const std::vector<std::string> base = {"--dense", inputs.checkpoint, "--config", moe_yaml, "--output", output};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = base;
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  };
  // Routed width 64 - 32 shared = 32 units, not a multiple of 24.
  expect_refused(with({"--set", "moe.expert_ffn_size=24"}), {"expert_ffn_size 24", "32", "switchyard upcycle:"});
  expect_refused(with({"--set", "model.hidden_size=64"}), {"hidden_size", "32", "64"});
  expect_refused(with({"--set", "model.num_layers=3"}), {"num_layers", "2", "3"});
  expect_refused(with({"--granularity", "2"}), {"asked for 2", "give 1"});
  expect_refused(with({"--router", "learned"}), {"--router", "learned"});
  expect_refused(with({"--frobnicate", "1"}), {"unknown argument '--frobnicate'", "usage:"});
  expect_refused({"--dense", scratch.file("missing"), "--config", moe_yaml, "--output", output}, {"missing"});
  expect_refused({"--dense", inputs.checkpoint, "--output", output}, {"--config is required"});
  fs::create_directories(scratch.path() / "not_a_model");
  write_file(scratch.path() / "not_a_model" / "config.json", "{}");
  expect_refused({"--dense", scratch.file("not_a_model"), "--config", moe_yaml, "--output", output},
                 {"neither a Switchyard checkpoint", "nor a Hugging Face model folder"});

  // A Hugging Face model with what our dense block lacks, or a file that does not match its config.
  std::string json;
  {
    std::ifstream in(inputs.config_json);
    json.assign(std::istreambuf_iterator<char>(in), {});
  }
  auto replaced = [&](const std::string& from, const std::string& to) {
    std::string text = json;
    const size_t at = text.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return text.replace(at, from.size(), to);
  };
  write_file(inputs.config_json, replaced("\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\""));
  expect_refused({"--dense", inputs.safetensors, "--config", moe_yaml, "--output", output}, {"hidden_act", "gelu"});
  const std::string wide =
      write_file(scratch.path() / "wide.json", replaced("\"intermediate_size\": 64", "\"intermediate_size\": 128"));
  expect_refused({"--dense", inputs.safetensors, "--dense-config", wide, "--config", moe_yaml, "--output", output},
                 {"model.safetensors", "mlp.gate_proj.weight"});

  // An existing output is never replaced.
  fs::create_directories(output);
  write_file(fs::path(output) / "keep.txt", "mine");
  auto [code, errors] = upcycle_cli(base);
  EXPECT_EQ(code, 1);
  EXPECT_NE(errors.find("exists"), std::string::npos) << errors;
  EXPECT_TRUE(fs::exists(fs::path(output) / "keep.txt"));
  EXPECT_FALSE(fs::exists(fs::path(output) / "latest"));
}


// Under mpirun: the checkpoint one process upcycled loads under EP over every rank (each reads
// its experts' block; with 4 ranks a copy of the 2 slices spans two of them), and the job's
// first loss equals the dense model's on the same global batch.
TEST(MultiRankUpcycleCommand, ExpertParallelTrainingFromTheUpcycledCheckpointStartsAtTheDenseLoss) {
  const std::shared_ptr<Communicator> world = test_world();
  if (world->size() < 2) GTEST_SKIP() << "needs mpirun with 2+ ranks";
  const int64_t ranks = world->size(), rank = world->rank();
  ASSERT_EQ(4 % ranks, 0) << "the tiny run's 4 experts need a world size dividing them";
  // Rank 0 makes the directory and sends its name to the others.
  std::unique_ptr<ScratchDirectory> owned;
  if (rank == 0) owned = std::make_unique<ScratchDirectory>("sy_upcycle_multirank");
  std::vector<int64_t> bytes(512, 0);
  if (owned) {
    const std::string name = owned->path().string();
    for (size_t i = 0; i < name.size() && i < bytes.size(); ++i) bytes[i] = static_cast<unsigned char>(name[i]);
  }
  Tensor packed = Tensor::from_vector(bytes, {static_cast<int64_t>(bytes.size())}, DType::kI64);
  world->broadcast(packed, 0);
  std::string name;
  for (int64_t byte : packed.to_vector<int64_t>()) {
    if (byte == 0) break;
    name.push_back(static_cast<char>(byte));
  }
  const fs::path root(name);
  const std::vector<std::string> batch = {"training.global_batch_size=8",
                                          "training.micro_batch_size=" + std::to_string(8 / ranks),
                                          "training.steps=2", "moe.expert_ffn_size=16"};
  auto with = [&](std::vector<std::string> more) {
    more.insert(more.end(), batch.begin(), batch.end());
    return more;
  };
  if (rank == 0) {
    const std::string yaml = prepare_tiny_run(root);
    write_file(root / "moe.yaml", yaml);
    EXPECT_TRUE(train(config_for(yaml, root / "dense", {"moe.num_experts=0", "training.steps=6"}),
                      TrainOptions{.world = std::make_shared<LocalCommunicator>()}).ok());
    EXPECT_TRUE(upcycle_command({"--dense", (root / "dense").string(), "--config", (root / "moe.yaml").string(),
                                 "--set", "moe.expert_ffn_size=16", "--output", (root / "moe").string()},
                                stdout).ok());
  }
  world->barrier();
  const std::string yaml = tiny_run_yaml(root);
  const double dense_loss = first_loss(
      config_for(yaml, root / ("dense-more-rank" + std::to_string(rank)),
                 with({"moe.num_experts=0", "checkpoint.load=" + (root / "dense" / "checkpoints").string()})),
      std::make_shared<LocalCommunicator>());
  const double moe_loss = first_loss(config_for(yaml, root / "moe-ep",
                                                with({"parallel.data=" + std::to_string(ranks),
                                                      "parallel.expert=" + std::to_string(ranks),
                                                      "checkpoint.load=" + (root / "moe").string()})),
                                     world);
  EXPECT_NEAR(moe_loss, dense_loss, 1e-5 * dense_loss) << "rank " << rank;
  world->barrier();  // rank 0 removes the directory only after everyone is done
}

}  // namespace
}  // namespace sy::testing
