// GradientReducer and the global-norm/agreement helpers: each rank computes its part of a global
// batch, and the reduced gradients must equal the gradients of the whole-batch mean loss that
// every rank can compute on its own (the one-rank reference). MultiRank* tests run under mpirun
// (ctest parallel_mpirun_np2/np4) and skip on one rank.
#include "parallel/data_parallel.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <memory>
#include <optional>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

#include "core/autograd/grad_mode.h"
#include "core/nn/linear.h"
#include "core/ops/ops.h"
#include "tests/support/mpi_test_world.h"

namespace sy {
namespace {

constexpr int64_t kWidth = 4;         // C
constexpr int64_t kExperts = 4;       // E
constexpr int64_t kGlobalBatch = 16;  // samples of the global batch

// Sample i of the global batch (C), the same on every rank.
Tensor inputs(int64_t begin, int64_t end) {
  std::vector<double> values;
  for (int64_t i = begin; i < end; ++i) {
    for (int64_t c = 0; c < kWidth; ++c) values.push_back(std::sin(1.0 + 0.37 * i + 0.91 * c));
  }
  return Tensor::from_vector(values, {end - begin, kWidth});
}

// x -> tanh(lin1 x) -> expert[i % E] -> lin2 -> sum of squares, averaged over the samples.
// Every rank builds the whole model from the same seed; with EP a rank reduces only its own
// experts, and uses the others as constants (their owners account for their gradients).
struct TinyModel {
  explicit TinyModel(uint64_t seed) : generator(seed) {
    lin1 = std::make_unique<Linear>(kWidth, kWidth, /*bias=*/true, 0.5, &generator);
    for (int64_t e = 0; e < kExperts; ++e) {
      experts.push_back(normal({kWidth, kWidth}, 0.0, 0.5, DType::kF32, &generator).set_requires_grad(true));
    }
    lin2 = std::make_unique<Linear>(kWidth, kWidth, /*bias=*/false, 0.5, &generator);
  }

  // `dense`: whether the dense weights take gradients; `live`: which experts do.
  Tensor loss(int64_t begin, int64_t end, bool dense, const std::vector<bool>& live) const {
    auto use = [](const Tensor& t, bool grad) { return grad ? t : t.detach(); };
    Tensor h = tanh(linear(inputs(begin, end), use(lin1->weight, dense), use(lin1->bias, dense)));
    Tensor total = Tensor::scalar(0.0);
    for (int64_t e = 0; e < kExperts; ++e) {
      std::vector<int64_t> rows;
      for (int64_t i = begin; i < end; ++i) {
        if (i % kExperts == e) rows.push_back(i - begin);
      }
      if (rows.empty()) continue;
      Tensor index = Tensor::from_vector(rows, {static_cast<int64_t>(rows.size())}, DType::kI64);
      Tensor y = linear(matmul(index_select(h, 0, index), use(experts[e], live[e])), use(lin2->weight, dense));
      total = total + sum(y * y);
    }
    return total / static_cast<double>(end - begin);
  }

  Generator generator;
  std::unique_ptr<Linear> lin1, lin2;
  std::vector<Tensor> experts;  // (C, C) each
};

// A rank's view of the model under a layout: its slice of the batch, its experts.
struct RankSetup {
  ProcessGroups groups;
  int64_t begin = 0, end = 0;  // this rank's samples
  std::vector<bool> owned;     // experts this rank holds
};

ProcessGroups groups_for(int64_t data, int64_t expert) {
  ParallelSizes sizes;
  sizes.data = data;
  sizes.expert = expert;
  absl::StatusOr<ProcessGroups> groups = make_process_groups(sizes, kExperts, testing::test_world());
  SY_CHECK(groups.ok(), groups.status().message());
  return *groups;
}

std::pair<int64_t, int64_t> slice_of(const ProcessGroups& groups, int64_t data_rank) {
  const int64_t per_rank = kGlobalBatch / groups.data_context->size();
  return {data_rank * per_rank, (data_rank + 1) * per_rank};
}

RankSetup setup_for(int64_t data, int64_t expert) {
  RankSetup setup{.groups = groups_for(data, expert)};
  std::tie(setup.begin, setup.end) = slice_of(setup.groups, setup.groups.coordinates().data);
  const int64_t per_rank = kExperts / expert;
  const int64_t first = setup.groups.coordinates().expert * per_rank;
  for (int64_t e = 0; e < kExperts; ++e) setup.owned.push_back(e >= first && e < first + per_rank);
  return setup;
}

// Registration order: lin1, this rank's experts, lin2 (so lin2's bucket comes first).
std::vector<ReducedParameter> reduced_parameters(const TinyModel& model, const std::vector<bool>& owned) {
  std::vector<ReducedParameter> parameters = {{"lin1.weight", model.lin1->weight, false},
                                              {"lin1.bias", model.lin1->bias, false}};
  for (int64_t e = 0; e < kExperts; ++e) {
    if (owned[e]) parameters.push_back({absl::StrCat("experts.", e), model.experts[e], true});
  }
  parameters.push_back({"lin2.weight", model.lin2->weight, false});
  return parameters;
}

// What the EP all-to-all's adjoint leaves in a rank's experts: the gradients of every EP
// peer's local loss; the dense weights see only this rank's own loss.
Tensor rank_loss(const TinyModel& model, const RankSetup& setup, double scale = 1.0) {
  Tensor loss = model.loss(setup.begin, setup.end, true, setup.owned);
  for (int64_t peer : setup.groups.layout.group(GroupKind::expert, setup.groups.rank)) {
    if (peer == setup.groups.rank) continue;
    auto [begin, end] = slice_of(setup.groups, setup.groups.layout.coordinates(peer).data);
    loss = loss + model.loss(begin, end, false, setup.owned);
  }
  return loss * scale;
}

// The one-rank reference: every gradient of the whole-batch mean loss.
std::map<std::string, Tensor> reference_gradients(uint64_t seed) {
  TinyModel reference(seed);
  reference.loss(0, kGlobalBatch, true, std::vector<bool>(kExperts, true)).backward();
  std::map<std::string, Tensor> grads = {{"lin1.weight", reference.lin1->weight.grad()},
                                         {"lin1.bias", reference.lin1->bias.grad()},
                                         {"lin2.weight", reference.lin2->weight.grad()}};
  for (int64_t e = 0; e < kExperts; ++e) grads[absl::StrCat("experts.", e)] = reference.experts[e].grad();
  return grads;
}

// |a - b| <= 1e-6 max |b|: relative to the gradient's scale (f32, summed in different orders).
void expect_close(const Tensor& actual, const Tensor& expected, const std::string& what, double factor = 1.0) {
  ASSERT_TRUE(actual.defined()) << what << " has no gradient";
  std::vector<double> a = actual.to_vector<double>(), b = expected.to_vector<double>();
  ASSERT_EQ(a.size(), b.size()) << what;
  double scale = 0.0;
  for (double v : b) scale = std::max(scale, std::abs(v * factor));
  ASSERT_GT(scale, 0.0) << what << ": a zero reference proves nothing";
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_NEAR(a[i], b[i] * factor, 1e-6 * scale) << what << "[" << i << "] on rank " << testing::test_world()->rank();
  }
}

void expect_reference_gradients(const std::vector<ReducedParameter>& parameters, uint64_t seed, double factor = 1.0) {
  std::map<std::string, Tensor> reference = reference_gradients(seed);
  for (const ReducedParameter& parameter : parameters) {
    expect_close(parameter.tensor.grad(), reference.at(parameter.name), parameter.name, factor);
  }
}

#define SKIP_ON_ONE_RANK() \
  if (!testing::under_mpirun()) GTEST_SKIP() << "needs mpirun with more than one rank"

// ---- one rank ----

TEST(DataParallelBuckets, ReverseOrderByKindDtypeAndSize) {
  auto leaf = [](int64_t numel, DType dtype) { return Tensor::zeros({numel}, dtype).set_requires_grad(true); };
  std::vector<ReducedParameter> parameters = {
      {"a", leaf(64, DType::kF32), false},  {"b", leaf(64, DType::kF32), false},
      {"c", leaf(64, DType::kF32), true},   {"d", leaf(64, DType::kF32), false},
      {"e", leaf(32, DType::kF64), false},  {"f", leaf(400, DType::kF32), false},
      {"g", leaf(64, DType::kF32), true},   {"h", leaf(64, DType::kF32), false}};
  // 600 bytes: two 256-byte gradients per bucket; f (1600 bytes) gets a bucket of its own.
  GradientReducer reducer(parameters, single_process_groups(0), 600.0 / (1024 * 1024));
  std::vector<std::vector<int64_t>> buckets;
  for (int64_t b = 0; b < reducer.num_buckets(); ++b) buckets.push_back(reducer.bucket_parameters(b));
  const std::vector<std::vector<int64_t>> expected = {{7}, {6, 2}, {5}, {4}, {3, 1}, {0}};
  EXPECT_EQ(buckets, expected) << "h | g c (expert) | f (oversized) | e (f64) | d b | a";
}

TEST(DataParallelOneRank, LeavesGradientsAsTheyAre) {
  TinyModel model(7);
  std::vector<ReducedParameter> parameters = reduced_parameters(model, std::vector<bool>(kExperts, true));
  Tensor unused = Tensor::ones({3}).set_requires_grad(true);
  parameters.push_back({"unused", unused, false});
  GradientReducer reducer(parameters, single_process_groups(kExperts), 25.0);
  model.loss(0, kGlobalBatch, true, std::vector<bool>(kExperts, true)).backward();
  Tensor grad = model.lin2->weight.grad();
  std::vector<float> before = grad.to_vector<float>();
  reducer.finish();
  EXPECT_EQ(reducer.buckets_launched(), 0);
  EXPECT_TRUE(model.lin2->weight.grad().same(grad));
  EXPECT_EQ(model.lin2->weight.grad().to_vector<float>(), before);
  EXPECT_FALSE(unused.grad().defined());
  parameters.pop_back();
  expect_reference_gradients(parameters, 7);
}

TEST(DataParallelOneRank, NormAndClipFollowTheOneProcessFormula) {
  Tensor a = Tensor::zeros({2}).set_requires_grad(true), b = Tensor::zeros({1}).set_requires_grad(true);
  a.set_grad(Tensor::from_vector<double>({3.0, 4.0}, {2}));
  b.set_grad(Tensor::from_vector<double>({12.0}, {1}));
  std::vector<ReducedParameter> parameters = {{"a", a, false}, {"b", b, true}};
  ProcessGroups groups = single_process_groups(2);
  EXPECT_DOUBLE_EQ(global_grad_norm(parameters, groups), 13.0);
  EXPECT_DOUBLE_EQ(clip_global_grad_norm(parameters, groups, 20.0), 13.0);
  EXPECT_FLOAT_EQ(a.grad().to_vector<float>()[0], 3.0f) << "no clipping under max_norm";
  EXPECT_DOUBLE_EQ(clip_global_grad_norm(parameters, groups, 6.5), 13.0);
  const double factor = 6.5 / (13.0 + 1e-6);
  EXPECT_FLOAT_EQ(a.grad().to_vector<float>()[1], static_cast<float>(4.0 * factor));
  EXPECT_FLOAT_EQ(b.grad().to_vector<float>()[0], static_cast<float>(12.0 * factor));
}

TEST(DataParallelOneRank, ParametersAreTriviallyIdentical) {
  TinyModel model(3);
  std::vector<ReducedParameter> parameters = reduced_parameters(model, std::vector<bool>(kExperts, true));
  ProcessGroups groups = single_process_groups(kExperts);
  broadcast_parameters(parameters, groups);
  EXPECT_EQ(check_parameters_identical(parameters, groups), "");
}

// ---- under mpirun ----

TEST(MultiRankDataParallel, GradientsEqualWholeBatchOneRank) {
  SKIP_ON_ONE_RANK();
  RankSetup setup = setup_for(testing::test_world()->size(), 1);
  TinyModel model(11);
  GradientReducer reducer(reduced_parameters(model, setup.owned), setup.groups, 25.0);
  rank_loss(model, setup).backward();
  reducer.finish();
  expect_reference_gradients(reducer.parameters(), 11);
}

TEST(MultiRankDataParallel, GradientAccumulationOverTwoMicroBatches) {
  SKIP_ON_ONE_RANK();
  RankSetup setup = setup_for(testing::test_world()->size(), 1);
  TinyModel model(12);
  GradientReducer reducer(reduced_parameters(model, setup.owned), setup.groups, 25.0);
  // Each micro-batch is half of this rank's slice; the step's loss is their mean.
  const int64_t middle = (setup.begin + setup.end) / 2;
  reducer.set_sync(false);
  (model.loss(setup.begin, middle, true, setup.owned) * 0.5).backward();
  EXPECT_EQ(reducer.buckets_launched(), 0) << "nothing may start while sync is off";
  reducer.set_sync(true);
  (model.loss(middle, setup.end, true, setup.owned) * 0.5).backward();
  // The dense bucket starts; on 4 ranks a micro-batch of 2 samples reaches only 2 of the 4
  // experts, so the expert bucket waits for finish(), which sends the first micro-batch's
  // gradients of the other experts.
  ASSERT_EQ(reducer.num_buckets(), 2);
  EXPECT_EQ(reducer.buckets_launched(), middle - setup.begin >= kExperts ? 2 : 1);
  reducer.finish();
  expect_reference_gradients(reducer.parameters(), 12);
  // A second step reuses the buckets.
  for (ReducedParameter parameter : reducer.parameters()) parameter.tensor.set_grad(Tensor());
  rank_loss(model, setup).backward();
  reducer.finish();
  expect_reference_gradients(reducer.parameters(), 12);
}

// EP x EDP: experts summed over expert_data and divided by the DP size; with EDP = 1 (EP = DP)
// nothing is sent for them but the division still applies.
TEST(MultiRankDataParallel, ExpertParallelGradientsEqualWholeBatchOneRank) {
  SKIP_ON_ONE_RANK();
  const int64_t world = testing::test_world()->size();
  for (int64_t expert : {int64_t{2}, world}) {
    if (kExperts % expert != 0 || (expert == world && world == 2)) continue;
    SCOPED_TRACE(absl::StrCat("DP ", world, " EP ", expert));
    RankSetup setup = setup_for(world, expert);
    TinyModel model(13);
    GradientReducer reducer(reduced_parameters(model, setup.owned), setup.groups, 25.0);
    rank_loss(model, setup).backward();
    reducer.finish();
    expect_reference_gradients(reducer.parameters(), 13);
  }
}

// lin1.weight's gradient is the last of the backward pass (its input is the model input). A
// probe hook on it, registered before the reducer's so it runs before lin1's own bucket can
// start, sees lin2's bucket already started.
TEST(MultiRankDataParallel, BucketStartsBeforeBackwardEnds) {
  SKIP_ON_ONE_RANK();
  RankSetup setup = setup_for(testing::test_world()->size(), 1);
  TinyModel model(14);
  std::unique_ptr<GradientReducer> reducer;
  std::optional<int64_t> launched_when_last_gradient_arrived;
  model.lin1->weight.register_post_accumulate_grad_hook(
      [&](Tensor&) { launched_when_last_gradient_arrived = reducer->buckets_launched(); });
  // A tiny bucket size: one parameter per bucket, lin2.weight's first.
  reducer = std::make_unique<GradientReducer>(reduced_parameters(model, setup.owned), setup.groups, 1e-9);
  ASSERT_EQ(reducer->num_buckets(), static_cast<int64_t>(reducer->parameters().size()));
  ASSERT_EQ(reducer->parameters()[reducer->bucket_parameters(0)[0]].name, "lin2.weight");
  rank_loss(model, setup).backward();
  ASSERT_TRUE(launched_when_last_gradient_arrived.has_value());
  EXPECT_GE(*launched_when_last_gradient_arrived, 1);
  EXPECT_LT(*launched_when_last_gradient_arrived, reducer->num_buckets());
  reducer->finish();
  expect_reference_gradients(reducer->parameters(), 14);
}

TEST(MultiRankDataParallel, SecondSynchronizedBackwardIsRefused) {
  SKIP_ON_ONE_RANK();
  RankSetup setup = setup_for(testing::test_world()->size(), 1);
  TinyModel model(15);
  GradientReducer reducer(reduced_parameters(model, setup.owned), setup.groups, 25.0);
  rank_loss(model, setup).backward();
  EXPECT_THROW(rank_loss(model, setup).backward(), Error);
  EXPECT_THROW(reducer.set_sync(false), Error);
  reducer.finish();  // every rank threw alike; the started buckets complete
}

// `sometimes` is used on rank 0 only: every rank ends with rank 0's gradient / N (the others
// contributed zeros). `never` is used nowhere and keeps no gradient, as on one rank.
TEST(MultiRankDataParallel, UnusedParameterGetsReducedZeros) {
  SKIP_ON_ONE_RANK();
  const int64_t world = testing::test_world()->size();
  RankSetup setup = setup_for(world, 1);
  TinyModel model(16);
  Tensor sometimes = Tensor::ones({3}).set_requires_grad(true);
  Tensor never = Tensor::ones({2}).set_requires_grad(true);
  std::vector<ReducedParameter> parameters = reduced_parameters(model, setup.owned);
  parameters.insert(parameters.begin() + 1, {"sometimes", sometimes, false});
  parameters.push_back({"never", never, false});
  GradientReducer reducer(parameters, setup.groups, 25.0);
  Tensor loss = rank_loss(model, setup);
  Tensor weights = Tensor::from_vector<double>({1.0, -2.0, 4.0}, {3});
  if (setup.groups.rank == 0) loss = loss + sum(sometimes * weights);
  loss.backward();
  reducer.finish();
  ASSERT_TRUE(sometimes.grad().defined());
  std::vector<float> grad = sometimes.grad().to_vector<float>();
  EXPECT_FLOAT_EQ(grad[0], 1.0f / world);
  EXPECT_FLOAT_EQ(grad[1], -2.0f / world);
  EXPECT_FLOAT_EQ(grad[2], 4.0f / world);
  EXPECT_FALSE(never.grad().defined());
  std::map<std::string, Tensor> reference = reference_gradients(16);
  for (const ReducedParameter& parameter : parameters) {
    if (reference.count(parameter.name)) expect_close(parameter.tensor.grad(), reference.at(parameter.name), parameter.name);
  }
}

// bf16 (reduced in f32 by MPI), f32 and f64 parameters land in separate buckets; rank r's
// gradient is r + 1 everywhere, so the average (N + 1) / 2 is exact in every dtype.
TEST(MultiRankDataParallel, MixedDtypesReduceInSeparateBuckets) {
  SKIP_ON_ONE_RANK();
  const int64_t world = testing::test_world()->size();
  RankSetup setup = setup_for(world, 1);
  std::vector<ReducedParameter> parameters;
  for (DType dtype : {DType::kBF16, DType::kF32, DType::kF64}) {
    parameters.push_back({dtype_name(dtype), Tensor::ones({5}, dtype).set_requires_grad(true), false});
  }
  GradientReducer reducer(parameters, setup.groups, 25.0);
  EXPECT_EQ(reducer.num_buckets(), 3);
  Tensor loss = Tensor::scalar(0.0);
  for (const ReducedParameter& parameter : parameters) {
    loss = loss + sum(parameter.tensor.to(DType::kF32)) * static_cast<double>(setup.groups.rank + 1);
  }
  loss.backward();
  reducer.finish();
  for (const ReducedParameter& parameter : parameters) {
    EXPECT_EQ(parameter.tensor.grad().dtype(), parameter.tensor.dtype()) << parameter.name;
    EXPECT_EQ(parameter.tensor.grad().to_vector<double>(), std::vector<double>(5, (world + 1) / 2.0)) << parameter.name;
  }
}

TEST(MultiRankDataParallel, GlobalNormAndClipEqualOneRank) {
  SKIP_ON_ONE_RANK();
  RankSetup setup = setup_for(testing::test_world()->size(), 2);
  TinyModel model(17);
  GradientReducer reducer(reduced_parameters(model, setup.owned), setup.groups, 25.0);
  rank_loss(model, setup).backward();
  reducer.finish();
  double squares = 0.0;
  for (const auto& [name, grad] : reference_gradients(17)) {
    for (double v : grad.to_vector<double>()) squares += v * v;
  }
  const double reference_norm = std::sqrt(squares);
  EXPECT_NEAR(global_grad_norm(reducer.parameters(), setup.groups), reference_norm, 1e-6 * reference_norm);
  const double max_norm = reference_norm / 2;
  EXPECT_NEAR(clip_global_grad_norm(reducer.parameters(), setup.groups, max_norm), reference_norm,
              1e-6 * reference_norm);
  expect_reference_gradients(reducer.parameters(), 17, max_norm / (reference_norm + 1e-6));
  EXPECT_NEAR(global_grad_norm(reducer.parameters(), setup.groups), max_norm, 1e-6 * max_norm);
}

// Rank-dependent starting values: after the broadcast every replica holds its group's first
// rank's values; an update from reduced gradients keeps them identical; a perturbation on the
// last rank is named, dense (over data_context) and expert (over expert_data).
TEST(MultiRankDataParallel, ParametersStayIdenticalAndAPerturbationIsNamed) {
  SKIP_ON_ONE_RANK();
  const int64_t world = testing::test_world()->size();
  RankSetup setup = setup_for(world, 2);
  TinyModel model(100 + setup.groups.rank);
  std::vector<ReducedParameter> parameters = reduced_parameters(model, setup.owned);
  EXPECT_NE(check_parameters_identical(parameters, setup.groups), "");
  broadcast_parameters(parameters, setup.groups);
  EXPECT_EQ(check_parameters_identical(parameters, setup.groups), "");
  TinyModel first_dense(100), first_expert(100 + setup.groups.layout.group(GroupKind::expert_data, setup.groups.rank)[0]);
  EXPECT_EQ(model.lin2->weight.to_vector<float>(), first_dense.lin2->weight.to_vector<float>());
  for (int64_t e = 0; e < kExperts; ++e) {
    if (setup.owned[e]) {
      EXPECT_EQ(model.experts[e].to_vector<float>(), first_expert.experts[e].to_vector<float>());
    }
  }

  GradientReducer reducer(parameters, setup.groups, 25.0);
  rank_loss(model, setup).backward();
  reducer.finish();
  clip_global_grad_norm(parameters, setup.groups, 0.1);
  {
    NoGradGuard no_grad;
    for (ReducedParameter parameter : parameters) parameter.tensor.add_(parameter.tensor.grad(), -0.1);
  }
  EXPECT_EQ(check_parameters_identical(parameters, setup.groups), "");

  const int64_t last = world - 1;
  auto perturb = [&](const std::string& name, double delta) {
    NoGradGuard no_grad;
    for (const ReducedParameter& parameter : parameters) {
      if (parameter.name == name && setup.groups.rank == last) parameter.tensor.narrow(0, 0, 1).add_(Tensor::full({1, kWidth}, delta));
    }
  };
  perturb("lin1.weight", 1e-3);
  EXPECT_EQ(check_parameters_identical(parameters, setup.groups),
            absl::StrCat("parameter 'lin1.weight' differs between ranks 0 and ", last, " (data_context group [",
                         absl::StrJoin(setup.groups.layout.group(GroupKind::data_context, 0), " "), "])"));
  perturb("lin1.weight", -1e-3);
  broadcast_parameters(parameters, setup.groups);  // the add/subtract may not round-trip exactly
  EXPECT_EQ(check_parameters_identical(parameters, setup.groups), "");

  const std::vector<int64_t> last_expert_data = setup.groups.layout.group(GroupKind::expert_data, last);
  const int64_t last_first_expert = setup.groups.layout.coordinates(last).expert * (kExperts / 2);
  perturb(absl::StrCat("experts.", last_first_expert), 1e-3);
  std::string verdict = check_parameters_identical(parameters, setup.groups);
  if (last_expert_data.size() == 1) {
    EXPECT_EQ(verdict, "") << "an expert held by one rank has no replica to differ from";
  } else {
    EXPECT_EQ(verdict, absl::StrCat("parameter 'experts.", last_first_expert, "' differs between ranks ",
                                    last_expert_data[0], " and ", last, " (expert_data group [",
                                    absl::StrJoin(last_expert_data, " "), "])"));
  }
}

}  // namespace
}  // namespace sy
