// Equivalence of distributed training with one process (issue 6): the trainer under mpirun
// with data and expert parallelism gives the same per-step losses (LM and aux) and the same
// gradients in each of 3 steps as one process training the same model on the same global
// batch. The one-process reference runs the same micro-batches by gradient accumulation, so
// capacity drops and micro-batch-scoped balancing losses see the same tokens; the global
// load-balancing scope is compared with one process on the whole global batch at once.
// Every rank trains the reference itself, so each compares its own shard. Run by the ctest
// entries launch_mpirun_np2 / np4 (filter MultiRank*); on one rank these tests skip.
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "launch/config.h"
#include "launch/trainer.h"
#include "moe/model.h"
#include "parallel/local_communicator.h"
#include "tests/launch/tiny_run_support.h"
#include "tests/support/mpi_test_world.h"
#include "tests/support/scratch_directory.h"

namespace sy::testing {
namespace {

namespace fs = std::filesystem;

// What one run leaves for the comparison: per-step losses and, per step, every gradient this
// rank holds with the offset of its block along dim 0 (experts under EP) in the global tensor.
struct Trace {
  std::vector<double> lm_loss, aux_loss;
  std::vector<std::map<std::string, std::vector<double>>> gradients;  // [step][name]
  std::map<std::string, int64_t> row_offset;                           // rows before this block
  std::map<std::string, int64_t> row_size;                             // elements per dim-0 row
};

// A directory every rank of the job shares: rank 0 makes it and broadcasts its name.
class SharedScratch {
 public:
  SharedScratch() {
    std::shared_ptr<Communicator> world = test_world();
    if (world->rank() == 0) local_ = std::make_unique<ScratchDirectory>("sy_distributed");
    std::string name = local_ ? local_->path().string() : std::string();
    std::vector<int64_t> bytes(512, 0);
    for (size_t i = 0; i < name.size() && i < bytes.size(); ++i) bytes[i] = static_cast<unsigned char>(name[i]);
    Tensor packed = Tensor::from_vector(bytes, {static_cast<int64_t>(bytes.size())}, DType::kI64);
    world->broadcast(packed, 0);
    name.clear();
    for (int64_t byte : packed.to_vector<int64_t>()) {
      if (byte == 0) break;
      name.push_back(static_cast<char>(byte));
    }
    path_ = name;
    world->barrier();
  }
  ~SharedScratch() { test_world()->barrier(); }  // rank 0 removes it only after everyone is done
  const fs::path& path() const { return path_; }

 private:
  std::unique_ptr<ScratchDirectory> local_;
  fs::path path_;
};

Trace run(const std::string& yaml, const std::string& output_dir, std::vector<std::string> overrides,
          std::shared_ptr<Communicator> world) {
  overrides.push_back("training.output_dir=" + output_dir);
  absl::StatusOr<TrainConfig> config = parse_config(yaml, "distributed_train_test.yaml", overrides);
  EXPECT_TRUE(config.ok()) << config.status();
  Trace trace;
  TrainOptions options;
  options.world = std::move(world);
  options.on_gradients = [&trace](const StepRecord& record) {
    trace.lm_loss.push_back(record.lm_loss);
    trace.aux_loss.push_back(record.aux_loss);
    std::map<std::string, int64_t> offsets;
    for (const ParameterShard& shard : record.model->parameter_shards()) offsets[shard.name] = shard.offsets[0];
    auto& gradients = trace.gradients.emplace_back();
    for (const auto& [name, parameter] : record.model->named_parameters()) {
      gradients[name] = parameter.grad().defined() ? parameter.grad().to(DType::kF64).to_vector<double>()
                                                   : std::vector<double>(parameter.numel(), 0.0);
      trace.row_offset[name] = offsets.count(name) ? offsets[name] : 0;
      trace.row_size[name] = parameter.dim() > 0 && parameter.size(0) > 0 ? parameter.numel() / parameter.size(0) : 1;
    }
  };
  absl::StatusOr<TrainSummary> summary = train(*config, options);
  EXPECT_TRUE(summary.ok()) << summary.status();
  return trace;
}

// Losses within `tolerance` relative; each gradient within `tolerance` in relative L2 norm,
// ||g - g_ref|| / ||g_ref|| over the block this rank holds (the 1e-5 in f32).
void expect_equivalent(const Trace& distributed, const Trace& reference, double tolerance) {
  ASSERT_EQ(distributed.lm_loss.size(), reference.lm_loss.size());
  for (size_t step = 0; step < reference.lm_loss.size(); ++step) {
    EXPECT_NEAR(distributed.lm_loss[step], reference.lm_loss[step], tolerance * std::abs(reference.lm_loss[step]))
        << "LM loss of step " << step;
    EXPECT_NEAR(distributed.aux_loss[step], reference.aux_loss[step],
                tolerance * std::abs(reference.aux_loss[step]) + 1e-12)
        << "aux loss of step " << step;
    for (const auto& [name, local] : distributed.gradients[step]) {
      ASSERT_TRUE(reference.gradients[step].count(name)) << name;
      const std::vector<double>& whole = reference.gradients[step].at(name);
      const int64_t begin = distributed.row_offset.at(name) * distributed.row_size.at(name);
      ASSERT_LE(begin + static_cast<int64_t>(local.size()), static_cast<int64_t>(whole.size())) << name;
      double difference = 0, norm = 0;
      for (size_t i = 0; i < local.size(); ++i) {
        difference += (local[i] - whole[begin + i]) * (local[i] - whole[begin + i]);
        norm += whole[begin + i] * whole[begin + i];
      }
      EXPECT_LE(std::sqrt(difference), tolerance * std::sqrt(norm) + 1e-12)
          << name << " at step " << step << " (|g_ref| " << std::sqrt(norm) << ")";
    }
  }
}

// The tiny MoE (4 experts, or 8 for EP 4) for 3 steps; global batch 8 split over the job's
// ranks; micro-batch-scoped balancing loss (global scope has its own test). The learning rate
// is small enough that the layouts' different f32 summation orders (relative 1e-7 in the
// first step's gradients) are not amplified past 1e-5 by AdamW within 3 steps.
std::vector<std::string> base_overrides(int64_t global_batch, int64_t micro_batch) {
  return {"training.steps=3",
          "optimizer.lr=0.001",
          "training.eval_interval=3",
          absl::StrCat("training.global_batch_size=", global_batch),
          absl::StrCat("training.micro_batch_size=", micro_batch),
          "moe.global_load_balance_coeff=0",
          "moe.load_balance_coeff=0.01"};
}

// Trains `overrides` on the job's ranks with parallel.data = world size and the given EP, and
// the same on one process with parallel 1, and compares.
void check_against_one_process(const std::string& name, int64_t expert, std::vector<std::string> overrides,
                               std::vector<std::string> reference_overrides = {}) {
  std::shared_ptr<Communicator> world = test_world();
  SharedScratch scratch;
  if (world->rank() == 0) prepare_tiny_run(scratch.path());
  world->barrier();  // the corpus exists for everyone
  const std::string shared_yaml = tiny_run_yaml(scratch.path());
  std::vector<std::string> distributed_overrides = overrides;
  distributed_overrides.push_back(absl::StrCat("parallel.data=", world->size()));
  distributed_overrides.push_back(absl::StrCat("parallel.expert=", expert));
  Trace distributed = run(shared_yaml, (scratch.path() / (name + "-distributed")).string(), distributed_overrides, world);
  std::vector<std::string> single = overrides;
  single.insert(single.end(), reference_overrides.begin(), reference_overrides.end());
  Trace reference = run(shared_yaml, (scratch.path() / absl::StrCat(name, "-reference-rank", world->rank())).string(),
                        single, std::make_shared<LocalCommunicator>());
  expect_equivalent(distributed, reference, 1e-5);
}

#define SKIP_ON_ONE_RANK()                                                               \
  if (!under_mpirun()) GTEST_SKIP() << "needs mpirun with 2 or more ranks (ctest -L multirank)"

TEST(MultiRankTrain, DataParallelEqualsOneProcess) {
  SKIP_ON_ONE_RANK();
  check_against_one_process("dp", 1, base_overrides(8, 8 / test_world()->size()));
}

TEST(MultiRankTrain, ExpertParallelEqualsOneProcess) {
  SKIP_ON_ONE_RANK();
  const int64_t ranks = test_world()->size();
  // EP over every rank: 8 experts so that EP 4 holds two each.
  check_against_one_process("ep", ranks, [&] {
    auto overrides = base_overrides(8, 8 / ranks);
    overrides.push_back("moe.num_experts=8");
    return overrides;
  }());
}

TEST(MultiRankTrain, DataTimesExpertParallelEqualsOneProcess) {
  SKIP_ON_ONE_RANK();
  if (test_world()->size() != 4) GTEST_SKIP() << "DP x EP with expert-data 2 needs 4 ranks";
  check_against_one_process("dp-ep", 2, base_overrides(8, 2));
}

TEST(MultiRankTrain, CapacityDropPoliciesEqualOneProcess) {
  SKIP_ON_ONE_RANK();
  const int64_t ranks = test_world()->size();
  for (const std::string policy : {"probs", "position"}) {
    for (const std::string pad : {"false", "true"}) {
      auto overrides = base_overrides(8, 8 / ranks);
      overrides.insert(overrides.end(), {"moe.capacity_factor=1.0", "moe.drop_policy=" + policy,
                                         "moe.pad_to_capacity=" + pad});
      SCOPED_TRACE(policy + " pad " + pad);
      check_against_one_process("capacity-" + policy + pad, 2, overrides);
    }
  }
}

TEST(MultiRankTrain, SequenceBalancingEqualsOneProcess) {
  SKIP_ON_ONE_RANK();
  auto overrides = base_overrides(8, 8 / test_world()->size());
  overrides.insert(overrides.end(), {"moe.load_balance_coeff=0", "moe.sequence_load_balance_coeff=0.01"});
  check_against_one_process("sequence-lbl", 2, overrides);
}

TEST(MultiRankTrain, GlobalBalancingEqualsOneProcessOnTheWholeBatch) {
  SKIP_ON_ONE_RANK();
  const int64_t ranks = test_world()->size();
  auto overrides = base_overrides(8, 8 / ranks);
  overrides.insert(overrides.end(), {"moe.load_balance_coeff=0", "moe.global_load_balance_coeff=0.01"});
  // The reference sees the whole global batch in one micro-batch.
  check_against_one_process("global-lbl", 2, overrides, {"training.micro_batch_size=8"});
}

TEST(MultiRankTrain, ChunkedOverlapEqualsOneProcess) {
  SKIP_ON_ONE_RANK();
  auto overrides = base_overrides(8, 8 / test_world()->size());
  overrides.push_back("parallel.overlap_chunks=3");
  check_against_one_process("overlap", 2, overrides);
}

TEST(MultiRankTrain, RunsAreBitIdentical) {
  SKIP_ON_ONE_RANK();
  std::shared_ptr<Communicator> world = test_world();
  SharedScratch scratch;
  if (world->rank() == 0) prepare_tiny_run(scratch.path());
  world->barrier();
  const std::string yaml = tiny_run_yaml(scratch.path());
  auto overrides = base_overrides(8, 8 / world->size());
  overrides.insert(overrides.end(), {absl::StrCat("parallel.data=", world->size()), "parallel.expert=2",
                                     "parallel.overlap_chunks=2"});
  Trace first = run(yaml, (scratch.path() / "first").string(), overrides, world);
  Trace second = run(yaml, (scratch.path() / "second").string(), overrides, world);
  EXPECT_EQ(first.lm_loss, second.lm_loss);
  EXPECT_EQ(first.aux_loss, second.aux_loss);
  EXPECT_EQ(first.gradients, second.gradients);
}

}  // namespace
}  // namespace sy::testing
