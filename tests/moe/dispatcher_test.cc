// The expert-parallel dispatcher: its chunk splitting and reordering on one rank, and the
// MultiRank* equivalence tests under mpirun: every rank builds the one-rank layer from the
// same seed, runs every rank's tokens through it as accumulated micro-batches, and compares
// the EP layer's output and gradients (its own tokens, router and shared experts summed over
// ranks, its local experts against their slice), within 1e-5 relative in f32.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "core/autograd/grad_mode.h"
#include "core/ops/ops.h"
#include "core/random.h"
#include "moe/dispatch_local.h"
#include "moe/dispatcher.h"
#include "moe/experts.h"
#include "moe/model.h"
#include "moe/moe_layer.h"
#include "parallel/collectives.h"
#include "tests/support/mpi_test_world.h"

namespace sy::testing {
namespace {

// max |actual - expected| <= 1e-5 * max |expected| (+ a floor for all-zero tensors).
void expect_close(const Tensor& actual, const Tensor& expected, const std::string& what) {
  ASSERT_EQ(actual.shape(), expected.shape()) << what;
  const std::vector<double> a = actual.detach().to(Device::CPU()).to_vector<double>();
  const std::vector<double> b = expected.detach().to(Device::CPU()).to_vector<double>();
  double scale = 0, error = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    scale = std::max(scale, std::abs(b[i]));
    error = std::max(error, std::abs(a[i] - b[i]));
  }
  EXPECT_LE(error, 1e-5 * scale + 1e-9) << what << ": max error " << error << " at scale " << scale;
}

// A plan over E experts for explicit top-k choices (weights all 1 / K).
DispatchPlan plan_for(const std::vector<int64_t>& choices, int64_t K, int64_t E, double capacity_factor = 0,
                      bool pad = false) {
  const int64_t N = static_cast<int64_t>(choices.size()) / K;
  Tensor indices = Tensor::from_vector(choices, {N, K}, DType::kI64);
  Tensor weights = Tensor::full({N, K}, 1.0 / static_cast<double>(K));
  return plan_dispatch(indices, weights, E, capacity_factor, DropPolicy::kPosition, pad);
}

TEST(DispatcherSplitPlan, ChunksTakeEachExpertsRowsOfTheirTokenRange) {
  // N = 5 tokens, K = 2, E = 3; chunks of tokens [0, 1), [1, 3), [3, 5).
  const std::vector<int64_t> choices = {0, 1, 1, 2, 0, 2, 1, 0, 2, 1};
  const DispatchPlan plan = plan_for(choices, 2, 3);
  const std::vector<DispatchChunk> chunks = split_plan(plan, 5, 2, 3);
  ASSERT_EQ(chunks.size(), 3u);
  EXPECT_EQ(chunks[0].token_begin, 0);
  EXPECT_EQ(chunks[0].token_count, 1);
  EXPECT_EQ(chunks[1].token_begin, 1);
  EXPECT_EQ(chunks[1].token_count, 2);
  EXPECT_EQ(chunks[2].token_begin, 3);
  EXPECT_EQ(chunks[2].token_count, 2);
  // Expert 0 gets tokens 0, 2, 3; expert 1 tokens 0, 1, 3, 4; expert 2 tokens 1, 2, 4.
  EXPECT_EQ(chunks[0].plan.tokens_per_expert, (std::vector<int64_t>{1, 1, 0}));
  EXPECT_EQ(chunks[0].plan.token_index.to_vector<int64_t>(), (std::vector<int64_t>{0, 0}));
  EXPECT_EQ(chunks[0].plan.slot_index.to_vector<int64_t>(), (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(chunks[1].plan.tokens_per_expert, (std::vector<int64_t>{1, 1, 2}));
  EXPECT_EQ(chunks[1].plan.token_index.to_vector<int64_t>(), (std::vector<int64_t>{1, 0, 0, 1}));
  EXPECT_EQ(chunks[1].plan.slot_index.to_vector<int64_t>(), (std::vector<int64_t>{2, 0, 1, 3}));
  EXPECT_EQ(chunks[2].plan.tokens_per_expert, (std::vector<int64_t>{1, 2, 1}));
  EXPECT_EQ(chunks[2].plan.token_index.to_vector<int64_t>(), (std::vector<int64_t>{0, 0, 1, 1}));
  EXPECT_EQ(chunks[2].plan.slot_index.to_vector<int64_t>(), (std::vector<int64_t>{1, 0, 3, 2}));
}

TEST(DispatcherSplitPlan, PaddingRowsGoToTheLastChunk) {
  // Capacity ceil(1.0 * 4 * 1 / 2) = 2 per expert: expert 0 gets 1 token (+1 padding), expert 1 three (1 dropped).
  const DispatchPlan plan = plan_for({0, 1, 1, 1}, 1, 2, 1.0, true);
  const std::vector<DispatchChunk> chunks = split_plan(plan, 4, 1, 2);
  EXPECT_EQ(chunks[0].plan.tokens_per_expert, (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(chunks[0].plan.padded, 0);
  EXPECT_EQ(chunks[1].plan.tokens_per_expert, (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(chunks[1].plan.token_index.to_vector<int64_t>(), (std::vector<int64_t>{-1, 0}));
  EXPECT_EQ(chunks[1].plan.slot_index.to_vector<int64_t>(), (std::vector<int64_t>{-1, 0}));
  EXPECT_EQ(chunks[1].plan.padded, 1);
}

TEST(DispatcherSplitPlan, MoreChunksThanTokensGiveEmptyChunks) {
  const DispatchPlan plan = plan_for({1, 0}, 1, 2);
  const std::vector<DispatchChunk> chunks = split_plan(plan, 2, 1, 4);
  int64_t rows = 0, empty = 0;
  for (const DispatchChunk& chunk : chunks) {
    rows += chunk.plan.token_index.numel();
    empty += chunk.token_count == 0 ? 1 : 0;
    EXPECT_EQ(chunk.plan.token_index.numel(), chunk.token_count);
  }
  EXPECT_EQ(rows, 2);
  EXPECT_EQ(empty, 2);
}

TEST(DispatcherReorder, SourceMajorRowsToLocalExpertMajor) {
  // P = 2 sources, L = 2 local experts: source 0 sends 1 row to expert 0 and 2 to expert 1,
  // source 1 sends 2 and 1: received rows [s0e0 | s0e1 s0e1 | s1e0 s1e0 | s1e1].
  const std::vector<int64_t> order = source_to_expert_order({1, 2, 2, 1}, 2, 2);
  EXPECT_EQ(order, (std::vector<int64_t>{0, 3, 4, 1, 2, 5}));
  const std::vector<int64_t> inverse = inverse_permutation(order);
  for (size_t i = 0; i < order.size(); ++i) EXPECT_EQ(inverse[order[i]], static_cast<int64_t>(i));
  EXPECT_TRUE(source_to_expert_order({0, 0, 0, 0}, 2, 2).empty());
}

// One rank, no group: every chunk count gives permute -> experts -> unpermute exactly.
TEST(DispatcherOneRank, ChunksMatchTheUnchunkedLocalPath) {
  const int64_t N = 7, C = 4, F = 3, E = 4, K = 2;
  Generator generator(11);
  GroupedExperts experts(E, C, F, 0.5, 0.5, &generator);
  const Tensor x0 = randn({N, C}, DType::kF32, &generator);
  const Tensor logits = randn({N, E}, DType::kF32, &generator);
  const Tensor probe = randn({N, C}, DType::kF32, &generator);
  for (int64_t chunks : {1, 2, 4, 9}) {
    Tensor x = x0.clone().set_requires_grad(true);
    Tensor w = softmax(logits, -1).narrow(1, 0, K).contiguous().set_requires_grad(true);
    const std::vector<int64_t> choice = {0, 1, 2, 3, 1, 2, 0, 3, 3, 2, 1, 0, 0, 2};
    const DispatchPlan plan = plan_for(choice, K, E);
    experts.zero_grad();
    Tensor out = dispatch_to_experts(x, plan, w, experts,
                                     DispatchOptions{.num_experts = E, .overlap_chunks = chunks});
    sum(out * probe).backward();

    Tensor x_ref = x0.clone().set_requires_grad(true);
    Tensor w_ref = w.detach().clone().set_requires_grad(true);
    GroupedExperts reference(E, C, F, 0.5, 0.5, nullptr);
    {
      NoGradGuard no_grad;
      Tensor w1 = reference.w1(), w2 = reference.w2();
      w1.copy_(experts.w1());
      w2.copy_(experts.w2());
    }
    Tensor expected = unpermute_tokens(reference.forward(permute_tokens(x_ref, plan), plan.tokens_per_expert), plan,
                                       w_ref, N);
    sum(expected * probe).backward();
    const std::string label = "chunks " + std::to_string(chunks);
    expect_close(out, expected, label + " output");
    expect_close(x.grad(), x_ref.grad(), label + " x grad");
    expect_close(w.grad(), w_ref.grad(), label + " weight grad");
    expect_close(experts.w1().grad(), reference.w1().grad(), label + " w1 grad");
    expect_close(experts.w2().grad(), reference.w2().grad(), label + " w2 grad");
  }
}

// The clocks change no result and fill every part but communication (no exchange on one rank).
TEST(DispatcherOneRank, TimingsChangeNothingAndFillTheParts) {
  const int64_t N = 6, C = 4, F = 3, E = 4, K = 2;
  Generator generator(5);
  GroupedExperts experts(E, C, F, 0.5, 0.5, &generator);
  const Tensor x0 = randn({N, C}, DType::kF32, &generator);
  const Tensor w = Tensor::full({N, K}, 0.5);
  const DispatchPlan plan = plan_for({0, 1, 2, 3, 1, 2, 0, 3, 3, 2, 1, 0}, K, E);
  auto run = [&](DispatchTimings* timings) {
    experts.zero_grad();
    Tensor x = x0.clone().set_requires_grad(true);
    Tensor out = dispatch_to_experts(x, plan, w, experts,
                                     DispatchOptions{.num_experts = E, .overlap_chunks = 2, .timings = timings});
    sum(out * out).backward();
    return std::make_pair(out.to_vector<float>(), x.grad().to_vector<float>());
  };
  DispatchTimings timings;
  EXPECT_EQ(run(&timings), run(nullptr));
  EXPECT_GT(timings.permute, 0);
  EXPECT_GT(timings.experts, 0);
  EXPECT_GT(timings.unpermute, 0);
  EXPECT_EQ(timings.communication, 0);
}

// ---- Under mpirun ----

// One EP layer configuration and each rank's token count.
struct Scenario {
  std::string name;
  std::vector<int64_t> tokens_per_rank;  // indexed by rank (cycled when the world is larger)
  double capacity_factor = 0;
  DropPolicy drop_policy = DropPolicy::kProbs;
  bool pad_to_capacity = false;
  bool shared_experts = true;
  // Micro-batch LBL and z-loss join the loss (each sees one micro-batch, as the reference's);
  // the global LBL is computed (its counts are checked) but not added: its counts differ by design.
  bool balancing_losses = false;
};

constexpr int64_t kE = 8, kK = 2, kC = 8, kF = 6;
constexpr uint64_t kSeed = 1234;

MoeConfig scenario_config(const Scenario& scenario) {
  MoeConfig config;
  config.num_experts = kE;
  config.top_k = kK;
  config.expert_ffn_size = kF;
  if (scenario.shared_experts) {
    config.num_shared_experts = 1;
    config.shared_expert_ffn_size = 5;
    config.shared_expert_gate = true;
  }
  config.capacity_factor = scenario.capacity_factor;
  config.drop_policy = scenario.drop_policy;
  config.pad_to_capacity = scenario.pad_to_capacity;
  if (scenario.balancing_losses) {
    config.load_balance_coeff = 0.1;
    config.z_loss_coeff = 0.01;
    config.global_load_balance_coeff = 0.1;
  }
  return config;
}

int64_t tokens_of(const Scenario& scenario, int64_t rank) {
  return scenario.tokens_per_rank[rank % static_cast<int64_t>(scenario.tokens_per_rank.size())];
}

// Rank r's tokens (1, n, C) and the probe its loss sum(out * probe) uses: the same on every rank.
std::pair<Tensor, Tensor> rank_inputs(const Scenario& scenario, int64_t rank) {
  Generator generator(kSeed + 100 + static_cast<uint64_t>(rank));
  const int64_t n = tokens_of(scenario, rank);
  Tensor x = randn({1, n, kC}, DType::kF32, &generator);
  Tensor probe = randn({1, n, kC}, DType::kF32, &generator);
  return {x, probe};
}

// sum(out * probe) plus the micro-batch balancing terms the stats hold.
Tensor scenario_loss(const Tensor& out, const Tensor& probe, const MoeLayerStats& stats) {
  Tensor loss = sum(out * probe);
  for (const Tensor* term : {&stats.load_balance_loss, &stats.z_loss}) {
    if (term->defined()) loss = loss + *term;
  }
  return loss;
}

// What the one-rank layer gives for every rank's tokens, run as accumulated micro-batches.
struct Reference {
  std::vector<Tensor> outputs, input_grads;  // per rank
  std::vector<std::pair<std::string, Tensor>> parameter_grads;
  Tensor step_counts;
};

Reference reference_run(const Scenario& scenario, int64_t ranks) {
  const MoeConfig config = scenario_config(scenario);
  Generator generator(kSeed);
  MoeLayer layer(config, kC, 0.3, 0.2, &generator);
  Reference reference;
  for (int64_t rank = 0; rank < ranks; ++rank) {
    auto [x, probe] = rank_inputs(scenario, rank);
    x.set_requires_grad(true);
    MoeLayerStats stats;
    Tensor out = layer.forward(x, &stats);
    scenario_loss(out, probe, stats).backward();
    reference.outputs.push_back(out.detach());
    reference.input_grads.push_back(x.grad());
  }
  for (const auto& [name, parameter] : layer.named_parameters()) reference.parameter_grads.emplace_back(name, parameter.grad());
  reference.step_counts = layer.step_tokens_per_expert();
  return reference;
}

// Runs the scenario on the EP layer with each chunk count and compares with the reference.
void check_against_one_rank(const Scenario& scenario, const std::vector<int64_t>& chunk_counts) {
  const std::shared_ptr<Communicator> world = test_world();
  if (world->size() < 2) GTEST_SKIP() << "needs mpirun with 2+ ranks";
  const int64_t ranks = world->size(), rank = world->rank();
  ASSERT_EQ(kE % ranks, 0) << "E = " << kE << " needs a world size dividing it";
  const int64_t L = kE / ranks;
  const Reference reference = reference_run(scenario, ranks);
  for (int64_t chunks : chunk_counts) {
    const std::string label = scenario.name + ", chunks " + std::to_string(chunks) + ", rank " + std::to_string(rank);
    Generator generator(kSeed);
    MoeLayer layer(scenario_config(scenario), kC, 0.3, 0.2, &generator,
                   MoeParallel{.expert = world, .balance = world, .overlap_chunks = chunks});
    auto [x, probe] = rank_inputs(scenario, rank);
    x.set_requires_grad(true);
    MoeLayerStats stats;
    Tensor out = layer.forward(x, &stats);
    scenario_loss(out, probe, stats).backward();
    expect_close(out, reference.outputs[rank], label + ": output");
    EXPECT_EQ(stats.global_load_balance_loss.defined(), scenario.balancing_losses && x.numel() > 0) << label;
    expect_close(x.grad(), reference.input_grads[rank], label + ": input grad");
    const auto parameters = layer.named_parameters();
    ASSERT_EQ(parameters.size(), reference.parameter_grads.size());
    for (size_t i = 0; i < parameters.size(); ++i) {
      const auto& [name, parameter] = parameters[i];
      ASSERT_EQ(name, reference.parameter_grads[i].first);
      const Tensor& expected = reference.parameter_grads[i].second;
      Tensor grad = parameter.grad().defined() ? parameter.grad() : Tensor::zeros(parameter.shape());
      if (name.rfind("experts.", 0) == 0) {
        expect_close(grad, expected.narrow(0, rank * L, L), label + ": " + name + " grad (local experts)");
      } else {
        // Replicated parameters: each rank's gradient covers its own tokens; their sum is the reference's.
        Tensor summed = grad.contiguous().clone();
        world->all_reduce(summed, ReduceOp::kSum);
        expect_close(summed, expected, label + ": " + name + " grad (summed over ranks)");
      }
    }
    EXPECT_EQ(layer.step_tokens_per_expert().to_vector<int64_t>(), reference.step_counts.to_vector<int64_t>())
        << label << ": global-batch counts";
  }
}

TEST(MultiRankDispatcher, DroplessMatchesOneRank) {
  check_against_one_rank({.name = "dropless", .tokens_per_rank = {6, 5, 7, 4}}, {1, 2, 4});
}

TEST(MultiRankDispatcher, CapacityDropByProbsMatchesOneRank) {
  check_against_one_rank({.name = "capacity 1.0 probs", .tokens_per_rank = {6, 9, 5, 8}, .capacity_factor = 1.0,
                          .drop_policy = DropPolicy::kProbs},
                         {1, 2});
}

TEST(MultiRankDispatcher, CapacityDropByPositionMatchesOneRank) {
  check_against_one_rank({.name = "capacity 1.0 position", .tokens_per_rank = {9, 6, 8, 5}, .capacity_factor = 1.0,
                          .drop_policy = DropPolicy::kPosition},
                         {1, 4});
}

TEST(MultiRankDispatcher, CapacityWithPaddingMatchesOneRank) {
  check_against_one_rank({.name = "capacity 1.0 padded", .tokens_per_rank = {7, 6, 5, 8}, .capacity_factor = 1.0,
                          .drop_policy = DropPolicy::kPosition, .pad_to_capacity = true},
                         {1, 2, 4});
}

TEST(MultiRankDispatcher, BalancingLossesMatchOneRank) {
  check_against_one_rank({.name = "balancing losses", .tokens_per_rank = {6, 7, 5, 6}, .balancing_losses = true},
                         {1, 2});
}

TEST(MultiRankDispatcher, NoSharedExpertsMatchesOneRank) {
  check_against_one_rank({.name = "no shared experts", .tokens_per_rank = {5, 6}, .shared_experts = false}, {1, 2});
}

// Rank 1 has no tokens; the one-token ranks leave most of the 8 experts without rows, and
// 4 chunks over one or two tokens leave chunks empty.
TEST(MultiRankDispatcher, EmptyRankExpertsAndChunksMatchOneRank) {
  check_against_one_rank({.name = "empty inputs", .tokens_per_rank = {2, 0, 1, 0}, .balancing_losses = true}, {1, 4});
}

// Runs are deterministic (the same chunk count twice gives the same bits), and 2 and 4 chunks
// agree with 1 within 1e-5: not bitwise, since the grouped GEMM then runs on fewer rows at a
// time and the BLAS blocks its sums differently.
TEST(MultiRankDispatcher, OverlapChunksAreDeterministicAndAgree) {
  const std::shared_ptr<Communicator> world = test_world();
  if (world->size() < 2) GTEST_SKIP() << "needs mpirun with 2+ ranks";
  const Scenario scenario{.name = "chunks", .tokens_per_rank = {7, 5, 6, 3}};
  auto run = [&](int64_t chunks) {
    Generator generator(kSeed);
    MoeLayer layer(scenario_config(scenario), kC, 0.3, 0.2, &generator,
                   MoeParallel{.expert = world, .overlap_chunks = chunks});
    return layer.forward(rank_inputs(scenario, world->rank()).first, nullptr);
  };
  const Tensor one = run(1);
  for (int64_t chunks : {2, 4}) {
    const Tensor first = run(chunks);
    EXPECT_EQ(first.to_vector<float>(), run(chunks).to_vector<float>()) << chunks << " chunks, run twice";
    expect_close(first, one, std::to_string(chunks) + " chunks against 1");
  }
}

// The world, counting its all-to-alls in flight (started and not yet waited).
class InFlightCounter : public Communicator {
 public:
  explicit InFlightCounter(std::shared_ptr<Communicator> inner) : inner_(std::move(inner)) {}
  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  std::string backend() const override { return inner_->backend(); }
  std::shared_ptr<Communicator> split(int color, int key) const override { return inner_->split(color, key); }
  Work all_reduce_async(const Tensor& t, ReduceOp op) override { return inner_->all_reduce_async(t, op); }
  Work all_gather_async(const Tensor& in, const Tensor& out) override { return inner_->all_gather_async(in, out); }
  Work reduce_scatter_async(const Tensor& in, const Tensor& out, ReduceOp op) override {
    return inner_->reduce_scatter_async(in, out, op);
  }
  Work all_to_all_v_async(const Tensor& in, const std::vector<int64_t>& send_rows, const Tensor& out,
                          const std::vector<int64_t>& recv_rows) override {
    most_in_flight = std::max(most_in_flight, ++in_flight);
    return Work(std::make_unique<Counted>(inner_->all_to_all_v_async(in, send_rows, out, recv_rows), &in_flight));
  }
  Work broadcast_async(const Tensor& t, int root) override { return inner_->broadcast_async(t, root); }
  Work send_async(const Tensor& t, int peer, int tag) override { return inner_->send_async(t, peer, tag); }
  Work recv_async(const Tensor& t, int peer, int tag) override { return inner_->recv_async(t, peer, tag); }
  Work barrier_async() override { return inner_->barrier_async(); }

  int in_flight = 0;
  int most_in_flight = 0;

 private:
  class Counted : public Work::Pending {
   public:
    Counted(Work work, int* in_flight) : work_(std::move(work)), in_flight_(in_flight) {}
    void wait() override {
      work_.wait();
      --*in_flight_;
    }

   private:
    Work work_;
    int* in_flight_;
  };
  std::shared_ptr<Communicator> inner_;
};

// With 2 chunks, two exchanges are in flight at once in forward and again in backward (the
// gradient's reverse exchanges start before the start nodes wait for them); with 1 chunk
// at most one is.
TEST(MultiRankDispatcher, ChunksKeepTwoExchangesInFlightInForwardAndBackward) {
  const std::shared_ptr<Communicator> world = test_world();
  if (world->size() < 2) GTEST_SKIP() << "needs mpirun with 2+ ranks";
  const Scenario scenario{.name = "in flight", .tokens_per_rank = {6, 5, 7, 4}};
  for (int64_t chunks : {1, 2}) {
    auto counter = std::make_shared<InFlightCounter>(world);
    Generator generator(kSeed);
    MoeLayer layer(scenario_config(scenario), kC, 0.3, 0.2, &generator,
                   MoeParallel{.expert = counter, .overlap_chunks = chunks});
    auto [x, probe] = rank_inputs(scenario, world->rank());
    x.set_requires_grad(true);
    Tensor out = layer.forward(x, nullptr);
    const int forward_most = counter->most_in_flight;
    EXPECT_EQ(counter->in_flight, 0) << "every forward exchange waited";
    counter->most_in_flight = 0;
    sum(out * probe).backward();
    EXPECT_EQ(counter->in_flight, 0) << "every backward exchange waited";
    EXPECT_EQ(forward_most, chunks == 1 ? 1 : 2) << chunks << " chunks, forward";
    EXPECT_EQ(counter->most_in_flight, chunks == 1 ? 1 : 2) << chunks << " chunks, backward";
  }
}

TEST(MultiRankAsyncAllToAll, StartAndWaitMatchTheBlockingExchangeAndItsAdjoint) {
  const std::shared_ptr<Communicator> world = test_world();
  if (world->size() < 2) GTEST_SKIP() << "needs mpirun with 2+ ranks";
  const int64_t P = world->size(), rank = world->rank();
  // Rank r sends (r + p) % 3 rows to rank p (some zero).
  std::vector<int64_t> send_rows(P), recv_rows(P);
  for (int64_t p = 0; p < P; ++p) {
    send_rows[p] = (rank + p) % 3;
    recv_rows[p] = (p + rank) % 3;
  }
  const int64_t rows = std::accumulate(send_rows.begin(), send_rows.end(), int64_t{0});
  Generator generator(kSeed + static_cast<uint64_t>(rank));
  const Tensor x0 = randn({rows, 3}, DType::kF32, &generator);
  const Tensor probe = randn({std::accumulate(recv_rows.begin(), recv_rows.end(), int64_t{0}), 3}, DType::kF32,
                             &generator);
  Tensor x = x0.clone().set_requires_grad(true);
  Tensor y = all_to_all_v_wait(all_to_all_v_start(x, send_rows, recv_rows, world));
  sum(y * probe).backward();
  Tensor x_ref = x0.clone().set_requires_grad(true);
  Tensor y_ref = all_to_all_v(x_ref, send_rows, recv_rows, world);
  sum(y_ref * probe).backward();
  EXPECT_EQ(y.to_vector<float>(), y_ref.to_vector<float>());
  EXPECT_EQ(x.grad().to_vector<float>(), x_ref.grad().to_vector<float>());
}

// Under EP each rank's experts hold exactly the one-rank model's values of those experts,
// every other parameter is the one-rank one, and parameter_shards() gives the boxes.
TEST(MultiRankModel, ExpertShardsEqualTheOneRankModelsSlices) {
  const std::shared_ptr<Communicator> world = test_world();
  if (world->size() < 2) GTEST_SKIP() << "needs mpirun with 2+ ranks";
  const int64_t ranks = world->size(), rank = world->rank();
  ModelConfig config;
  config.vocab_size = 32;
  config.hidden_size = 8;
  config.num_layers = 2;
  config.num_heads = 2;
  config.num_kv_heads = 2;
  config.ffn_size = 16;
  config.max_seq_len = 8;
  config.first_k_dense_layers = 1;
  config.seed = 7;
  config.moe = scenario_config({.name = "model"});
  const Transformer one_rank(config);
  const Transformer sharded(config, MoeParallel{.expert = world});
  EXPECT_TRUE(one_rank.parameter_shards().empty());
  const auto expected = one_rank.named_parameters();
  const auto actual = sharded.named_parameters();
  ASSERT_EQ(actual.size(), expected.size());
  const int64_t L = kE / ranks;
  std::vector<std::string> sharded_names;
  for (size_t i = 0; i < actual.size(); ++i) {
    ASSERT_EQ(actual[i].first, expected[i].first);
    const Tensor& want = is_expert_parameter(expected[i].first) ? expected[i].second.narrow(0, rank * L, L)
                                                                  : expected[i].second;
    EXPECT_EQ(actual[i].second.contiguous().to_vector<float>(), want.contiguous().to_vector<float>())
        << actual[i].first;
    if (is_expert_parameter(actual[i].first)) sharded_names.push_back(actual[i].first);
  }
  const std::vector<ParameterShard> shards = sharded.parameter_shards();
  ASSERT_EQ(shards.size(), 2u);
  ASSERT_EQ(sharded_names.size(), 2u);
  EXPECT_EQ(shards[0].name, "layers.1.mlp.experts.w1");
  EXPECT_EQ(shards[0].global_shape, (std::vector<int64_t>{kE, 8, 2 * kF}));
  EXPECT_EQ(shards[0].offsets, (std::vector<int64_t>{rank * L, 0, 0}));
  EXPECT_EQ(shards[1].name, "layers.1.mlp.experts.w2");
  EXPECT_EQ(shards[1].global_shape, (std::vector<int64_t>{kE, kF, 8}));
  EXPECT_EQ(shards[1].offsets, (std::vector<int64_t>{rank * L, 0, 0}));
}

}  // namespace
}  // namespace sy::testing
