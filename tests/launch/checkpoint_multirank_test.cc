// Sharded checkpoints: a model whose expert weights are split over EP (as the trainer's are),
// saved under one rank layout and loaded under others (EP=2 x EDP=2 -> EP=4, -> EP=1 on every
// rank, -> one process alone), exported to one safetensors file, and a failure on one rank
// returned on all. MultiRank* run under `mpirun -np 2|4` (ctest launch_mpirun_np*) and skip in
// one process; CheckpointExport* run in one process.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/io/safetensors.h"
#include "launch/checkpoint.h"
#include "launch/checkpoint_command.h"
#include "launch/proto/checkpoint.pb.h"
#include "tests/support/mpi_test_world.h"
#include "tests/support/scratch_directory.h"

namespace sy {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kExperts = 4;

// The global value of every tensor, model or optimizer, by name: element n of `name` is
// 1000 * id(name) + n, exact in f32, so a misplaced block shows.
Tensor global_tensor(const std::string& name, const Shape& shape) {
  const float id = static_cast<float>(std::hash<std::string>{}(name) % 1000);
  int64_t count = 1;
  for (int64_t size : shape) count *= size;
  std::vector<float> values(count);
  for (int64_t n = 0; n < count; ++n) values[n] = 1000 * id + static_cast<float>(n);
  return Tensor::from_vector(values, shape);
}

const std::map<std::string, Shape> kGlobalShapes = {
    {"dense_weight", {3, 5}}, {"experts_w1", {kExperts, 3, 2}}, {"experts_w2", {kExperts, 2, 3}}, {"gate_bias", {kExperts}}};

// An expert weight, or its optimizer state.
bool is_expert(const std::string& name) { return name.find("experts_") != std::string::npos; }

// The rows of `name`'s global tensor that EP rank `ep_rank` of `ep_size` holds (all of a
// replicated tensor).
Tensor held_part(const std::string& name, const Shape& global_shape, int64_t ep_size, int64_t ep_rank) {
  Tensor global = global_tensor(name, global_shape);
  if (!is_expert(name) || ep_size == 1) return global;
  const int64_t per_rank = global_shape[0] / ep_size;
  return global.slice(0, ep_rank * per_rank, (ep_rank + 1) * per_rank).contiguous();
}

// The trainer's layout in small: a replicated weight and buffer, and expert weights (E, ., .)
// split over the EP group along dim 0. `filled`: the global values; else a constant.
class ShardedToy : public Module {
 public:
  ShardedToy(const ProcessGroups& groups, bool filled) : ep_size_(groups.expert->size()), ep_rank_(groups.expert->rank()) {
    for (const auto& [name, shape] : kGlobalShapes) {
      Tensor part = held_part(name, shape, ep_size_, ep_rank_);
      if (!filled) part = Tensor::full(part.shape(), -7.0);
      if (name == "gate_bias") {
        register_buffer(name, part);
      } else {
        register_parameter(name, part);
      }
    }
  }
  // What the trainer passes: the expert weights' boxes (none without EP).
  CheckpointRank checkpoint_rank(const ProcessGroups& groups) const {
    CheckpointRank rank{.groups = &groups};
    if (ep_size_ == 1) return rank;
    for (const auto& [name, shape] : kGlobalShapes) {
      if (is_expert(name)) rank.shards[name] = {shape, {ep_rank_ * shape[0] / ep_size_, 0, 0}};
    }
    return rank;
  }
  int64_t ep_size_, ep_rank_;
};

// AdamW over the toy's parameters; `filled`: its state holds the global values of its own
// names (sharded like the parameters) and step 5, else the fresh optimizer's zeros.
std::unique_ptr<Optimizer> toy_optimizer(const ShardedToy& model, bool filled) {
  std::unique_ptr<Optimizer> optimizer = make_optimizer(OptimizerConfig{}, model.named_parameters());
  if (!filled) return optimizer;
  StateDict state;
  for (const auto& [name, tensor] : optimizer->state_dict()) {
    if (name == "step") {
      state[name] = Tensor::scalar(5, DType::kI64);
    } else {
      const std::string parameter = name.substr(name.find('.') + 1);
      state[name] = held_part(name, kGlobalShapes.at(parameter), model.ep_size_, model.ep_rank_);
    }
  }
  absl::Status status = optimizer->load_state_dict(state);
  SY_CHECK(status.ok(), "toy_optimizer: ", status.message());
  return optimizer;
}

std::string bytes_of(const Tensor& tensor) {
  Tensor host = tensor.detach().contiguous();
  return std::string(static_cast<const char*>(host.data_ptr()), host.nbytes());
}

// Every tensor of the model and the optimizer equals its slice of the global tensor.
void expect_holds_global_values(const ShardedToy& model, const Optimizer& optimizer, const std::string& context) {
  for (const auto& [name, tensor] : model.state_dict()) {
    EXPECT_EQ(bytes_of(tensor), bytes_of(held_part(name, kGlobalShapes.at(name), model.ep_size_, model.ep_rank_)))
        << context << ": " << name;
  }
  for (const auto& [name, tensor] : optimizer.state_dict()) {
    if (name == "step") continue;
    const Shape& shape = kGlobalShapes.at(name.substr(name.find('.') + 1));
    EXPECT_EQ(bytes_of(tensor), bytes_of(held_part(name, shape, model.ep_size_, model.ep_rank_))) << context << ": " << name;
  }
  EXPECT_EQ(optimizer.step_count(), 5) << context;
}

TrainState toy_state(int64_t step) {
  TrainState state;
  state.step = step;
  state.consumed_samples = 32 * step;
  state.rng = {7, 100 + static_cast<uint64_t>(step)};
  return state;
}

// A directory every rank sees: rank 0's scratch directory, its name found by rank 0's pid.
class SharedDirectory {
 public:
  explicit SharedDirectory(Communicator& world) : world_(world) {
    Tensor pid = Tensor::from_vector<int64_t>({getpid()}, {1}, DType::kI64);
    world.broadcast(pid, 0);
    path_ = (fs::temp_directory_path() / ("sy_ckpt_multirank_" + std::to_string(pid.item<int64_t>()))).string();
    if (world.rank() == 0) {
      fs::remove_all(path_);
      fs::create_directories(path_);
    }
    world.barrier();
  }
  ~SharedDirectory() {
    world_.barrier();
    if (world_.rank() == 0) fs::remove_all(path_);
  }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  Communicator& world_;
  std::string path_;
};

ProcessGroups groups_for(int64_t data, int64_t expert) {
  absl::StatusOr<ProcessGroups> groups =
      make_process_groups(ParallelSizes{.data = data, .expert = expert}, kExperts, testing::test_world());
  SY_CHECK(groups.ok(), groups.status().message());
  return *groups;
}

checkpoint::Manifest read_manifest_file(const std::string& directory) {
  std::ifstream in(directory + "/manifest.pb", std::ios::binary);
  checkpoint::Manifest manifest;
  manifest.ParseFromString(std::string(std::istreambuf_iterator<char>(in), {}));
  return manifest;
}

// Loads `directory` into a fresh toy under `groups` (its own layout) and checks every value.
void load_and_check(const std::string& directory, const ProcessGroups& groups, const std::string& context) {
  ShardedToy target(groups, /*filled=*/false);
  std::unique_ptr<Optimizer> optimizer = toy_optimizer(target, /*filled=*/false);
  absl::StatusOr<TrainState> state = load_checkpoint(directory, target, optimizer.get(), target.checkpoint_rank(groups));
  ASSERT_TRUE(state.ok()) << context << ": " << state.status();
  EXPECT_EQ(state->step, 3) << context;
  EXPECT_EQ(state->consumed_samples, 96) << context;
  expect_holds_global_values(target, *optimizer, context);
}

TEST(MultiRankCheckpoint, SavedUnderOneLayoutLoadsUnderEveryOtherAndExportsWholeTensors) {
  std::shared_ptr<Communicator> world = testing::test_world();
  if (world->size() == 1) GTEST_SKIP() << "runs under mpirun -np 2 or 4";
  const int64_t size = world->size();
  SharedDirectory shared(*world);
  // Saved with EP=2 (x EDP=2 on 4 ranks) and, on 4 ranks, with EP=4.
  for (int64_t saved_ep : size == 4 ? std::vector<int64_t>{2, 4} : std::vector<int64_t>{2}) {
    const std::string context = "saved with EP=" + std::to_string(saved_ep);
    const std::string root = shared.file("ep" + std::to_string(saved_ep));
    ProcessGroups groups = groups_for(size, saved_ep);
    ShardedToy source(groups, /*filled=*/true);
    std::unique_ptr<Optimizer> optimizer = toy_optimizer(source, /*filled=*/true);
    absl::Status saved = save_checkpoint(root, source, *optimizer, toy_state(3), "model: {}\n", 2,
                                         source.checkpoint_rank(groups));
    ASSERT_TRUE(saved.ok()) << saved;
    const std::string directory = root + "/step_00000003";

    // The manifest: the layout, each expert weight in EP blocks written by the first rank of
    // each expert-data group, the replicated tensors once, by rank 0, and no fragments left.
    checkpoint::Manifest manifest = read_manifest_file(directory);
    EXPECT_EQ(manifest.layout().world_size(), size) << context;
    EXPECT_EQ(manifest.layout().data(), size) << context;
    EXPECT_EQ(manifest.layout().expert(), saved_ep) << context;
    for (const checkpoint::TensorEntry& entry : manifest.model_tensors()) {
      EXPECT_EQ(Shape(entry.shape().begin(), entry.shape().end()), kGlobalShapes.at(entry.name())) << entry.name();
      EXPECT_EQ(entry.shards_size(), is_expert(entry.name()) ? saved_ep : 1) << context << ": " << entry.name();
      for (int i = 0; i < entry.shards_size(); ++i) {
        EXPECT_EQ(entry.shards(i).file(), absl::StrFormat("model-rank%05d.safetensors", is_expert(entry.name()) ? i : 0))
            << context << ": " << entry.name();
      }
    }
    std::set<std::string> files;
    for (const auto& file : fs::directory_iterator(directory)) files.insert(file.path().filename().string());
    std::set<std::string> expected_files = {"config.yaml", "manifest.pb"};
    for (int64_t writer = 0; writer < saved_ep; ++writer) {
      expected_files.insert(absl::StrFormat("model-rank%05d.safetensors", writer));
      expected_files.insert(absl::StrFormat("optimizer-rank%05d.safetensors", writer));
    }
    EXPECT_EQ(files, expected_files) << context;

    // Under the same layout: bit-exact.
    {
      ShardedToy target(groups, /*filled=*/false);
      std::unique_ptr<Optimizer> target_optimizer = toy_optimizer(target, /*filled=*/false);
      ASSERT_TRUE(load_checkpoint(directory, target, target_optimizer.get(), target.checkpoint_rank(groups)).ok());
      for (const auto& [name, tensor] : source.state_dict()) {
        EXPECT_EQ(bytes_of(target.state_dict().at(name)), bytes_of(tensor)) << context << ": " << name;
      }
      for (const auto& [name, tensor] : optimizer->state_dict()) {
        EXPECT_EQ(bytes_of(target_optimizer->state_dict().at(name)), bytes_of(tensor)) << context << ": " << name;
      }
    }
    // Under every other layout of this world, and by each rank alone as a one-rank job.
    for (int64_t loaded_ep : {int64_t{1}, int64_t{2}, size}) {
      load_and_check(directory, groups_for(size, loaded_ep), context + ", loaded with EP=" + std::to_string(loaded_ep));
    }
    load_and_check(directory, single_process_groups(kExperts), context + ", loaded by one process");

    // Exported by one rank: whole tensors, the model's only.
    if (world->rank() == 0) {
      const std::string exported = shared.file("export.safetensors");
      ASSERT_TRUE(export_checkpoint(directory, exported).ok());
      absl::StatusOr<SafetensorsFile> file = read_safetensors(exported);
      ASSERT_TRUE(file.ok()) << file.status();
      std::map<std::string, std::string> got, want;
      for (const auto& [name, tensor] : file->tensors) got[name] = bytes_of(tensor);
      for (const auto& [name, shape] : kGlobalShapes) want[name] = bytes_of(global_tensor(name, shape));
      EXPECT_EQ(got, want) << context;
    }
    world->barrier();
  }
}

TEST(MultiRankCheckpoint, AFailureOnOneRankIsReturnedOnEveryRankAndChangesNothing) {
  std::shared_ptr<Communicator> world = testing::test_world();
  if (world->size() == 1) GTEST_SKIP() << "runs under mpirun -np 2 or 4";
  const int last = world->size() - 1;
  SharedDirectory shared(*world);
  const std::string root = shared.file("checkpoints");
  ProcessGroups groups = groups_for(world->size(), 2);
  ShardedToy source(groups, /*filled=*/true);
  std::unique_ptr<Optimizer> optimizer = toy_optimizer(source, /*filled=*/true);
  ASSERT_TRUE(save_checkpoint(root, source, *optimizer, toy_state(3), "", 2, source.checkpoint_rank(groups)).ok());

  // The last rank claims a block outside the tensor: every rank's save fails with its reason.
  CheckpointRank bad = source.checkpoint_rank(groups);
  if (world->rank() == last) bad.shards["experts_w1"].offsets[0] = kExperts;
  absl::Status saved = save_checkpoint(root, source, *optimizer, toy_state(4), "", 2, bad);
  EXPECT_FALSE(saved.ok());
  EXPECT_NE(saved.message().find(absl::StrCat("rank ", last, " of ", world->size(),
                                              ": tensor experts_w1: this rank holds a block of shape (2, 3, 2) at "
                                              "offsets (4, 0, 0), which does not fit its global shape (4, 3, 2)")),
            std::string::npos)
      << saved;
  world->barrier();
  std::set<std::string> entries;
  for (const auto& entry : fs::directory_iterator(root)) entries.insert(entry.path().filename().string());
  EXPECT_EQ(entries, (std::set<std::string>{"latest", "step_00000003"}));

  // A load that fails on the last rank changes no rank's model or optimizer.
  ShardedToy target(groups, /*filled=*/false);
  std::unique_ptr<Optimizer> target_optimizer = toy_optimizer(target, /*filled=*/false);
  const std::string model_before = bytes_of(target.state_dict().at("experts_w1"));
  const std::string optimizer_before = bytes_of(target_optimizer->state_dict().at("exp_avg.experts_w1"));
  absl::StatusOr<TrainState> loaded = load_checkpoint(root + "/step_00000003", target, target_optimizer.get(), bad);
  EXPECT_FALSE(loaded.ok());
  EXPECT_NE(loaded.status().message().find(absl::StrCat("rank ", last, " of ")), std::string::npos) << loaded.status();
  EXPECT_EQ(bytes_of(target.state_dict().at("experts_w1")), model_before);
  EXPECT_EQ(bytes_of(target_optimizer->state_dict().at("exp_avg.experts_w1")), optimizer_before);
  EXPECT_EQ(target_optimizer->step_count(), 0);
}

// One process: a checkpoint saved whole exports the same tensors, and the CLI names bad paths.
TEST(CheckpointExport, WritesTheModelTensorsWholeAndNamesBadPaths) {
  testing::ScratchDirectory scratch("sy_checkpoint_export");
  ASSERT_TRUE(scratch.ok());
  ProcessGroups groups = single_process_groups(kExperts);
  ShardedToy source(groups, /*filled=*/true);
  std::unique_ptr<Optimizer> optimizer = toy_optimizer(source, /*filled=*/true);
  const std::string root = scratch.file("checkpoints");
  ASSERT_TRUE(save_checkpoint(root, source, *optimizer, toy_state(3), "", 2).ok());

  const std::string exported = scratch.file("model.safetensors");
  std::FILE* out = std::tmpfile();
  absl::Status status = checkpoint_command({"export", root, exported}, out);  // the run's folder: its latest step
  std::fclose(out);
  ASSERT_TRUE(status.ok()) << status;
  absl::StatusOr<SafetensorsFile> file = read_safetensors(exported);
  ASSERT_TRUE(file.ok()) << file.status();
  ASSERT_EQ(file->tensors.size(), kGlobalShapes.size());
  for (const auto& [name, tensor] : file->tensors) {
    EXPECT_EQ(bytes_of(tensor), bytes_of(global_tensor(name, kGlobalShapes.at(name)))) << name;
  }

  status = checkpoint_command({"export", scratch.file("nowhere"), exported}, stdout);
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(status.message().find(scratch.file("nowhere") + ": no such checkpoint directory"), std::string::npos)
      << status;
  status = checkpoint_command({"export", root, scratch.file("missing/dir/out.safetensors")}, stdout);
  EXPECT_NE(status.message().find("the directory " + scratch.file("missing/dir") + " does not exist"), std::string::npos)
      << status;
  EXPECT_FALSE(checkpoint_command({"export", root}, stdout).ok());
  EXPECT_EQ(run_checkpoint({"export", scratch.file("nowhere"), exported}), 1);
  // The failed exports left the earlier output as it was.
  absl::StatusOr<SafetensorsFile> again = read_safetensors(exported);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->tensors.size(), kGlobalShapes.size());
}

// One process that claims to hold only half of a tensor: the save refuses, since the blocks
// would not tile it, and the previous checkpoint stays the latest.
TEST(CheckpointSave, BlocksThatDoNotTileATensorAreRefused) {
  testing::ScratchDirectory scratch("sy_checkpoint_tiling");
  ASSERT_TRUE(scratch.ok());
  ProcessGroups groups = single_process_groups(kExperts);
  ShardedToy source(groups, /*filled=*/true);
  std::unique_ptr<Optimizer> optimizer = toy_optimizer(source, /*filled=*/true);
  const std::string root = scratch.file("checkpoints");
  ASSERT_TRUE(save_checkpoint(root, source, *optimizer, toy_state(3), "", 2).ok());
  CheckpointRank half{.groups = &groups};
  half.shards["experts_w1"] = {{2 * kExperts, 3, 2}, {0, 0, 0}};
  absl::Status status = save_checkpoint(root, source, *optimizer, toy_state(4), "", 2, half);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(status.message().find("tensor experts_w1 (8, 3, 2): its 1 blocks cover 24 of its 48 elements"),
            std::string::npos)
      << status;
  std::set<std::string> entries;
  for (const auto& entry : fs::directory_iterator(root)) entries.insert(entry.path().filename().string());
  EXPECT_EQ(entries, (std::set<std::string>{"latest", "step_00000003"}));
}

}  // namespace
}  // namespace sy
