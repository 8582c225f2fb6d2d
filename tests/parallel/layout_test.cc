// The rank layout: every group of many layouts (every factorization of 1..16 and 64 ranks, a
// few mixed 96- and 1024-rank ones) against an enumeration by nested loops, the partition
// invariants, two hand-written rank maps (layout.h's example and Megatron-Core's), and the
// validation messages.
#include "parallel/layout.h"

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"

namespace sy::testing {
namespace {

using Groups = std::vector<std::vector<int64_t>>;

// The layout enumerated the slow way: nested loops, slowest dimension outermost, hand out
// rank numbers in turn; then a group of a kind is every rank with the same values of the
// coordinates the kind does NOT span (written out per kind below).
struct Enumeration {
  std::vector<RankCoordinates> coordinates;  // by rank
  std::vector<int64_t> expert_pipeline;      // the stage the expert folding's loops gave
  std::map<GroupKind, std::vector<std::vector<int64_t>>> group_of_rank;
  std::map<GroupKind, int64_t> group_size;
  std::vector<std::vector<int64_t>> expert_folding_pipeline_group;  // by rank
};

std::vector<int64_t> fixed_coordinates(GroupKind kind, const RankCoordinates& c) {
  switch (kind) {
    case GroupKind::tensor: return {c.context, c.data, c.pipeline};
    case GroupKind::context: return {c.tensor, c.data, c.pipeline};
    case GroupKind::data: return {c.tensor, c.context, c.pipeline};
    case GroupKind::pipeline: return {c.tensor, c.context, c.data};
    case GroupKind::tensor_context: return {c.data, c.pipeline};
    case GroupKind::data_context: return {c.tensor, c.pipeline};
    case GroupKind::expert: return {c.expert_tensor, c.expert_data, c.pipeline};
    case GroupKind::expert_tensor: return {c.expert, c.expert_data, c.pipeline};
    case GroupKind::expert_data: return {c.expert_tensor, c.expert, c.pipeline};
  }
  return {};
}

Enumeration enumerate(const ParallelSizes& s, int64_t world) {
  Enumeration e;
  e.coordinates.resize(world);
  e.expert_pipeline.resize(world);
  int64_t next = 0;
  for (int64_t pp = 0; pp < s.pipeline; ++pp)
    for (int64_t dp = 0; dp < s.data; ++dp)
      for (int64_t cp = 0; cp < s.context; ++cp)
        for (int64_t tp = 0; tp < s.tensor; ++tp) {
          RankCoordinates& c = e.coordinates[next++];
          c.tensor = tp, c.context = cp, c.data = dp, c.pipeline = pp;
        }
  EXPECT_EQ(next, world);
  const int64_t expert_data = world / s.pipeline / s.expert / s.expert_tensor;
  next = 0;
  for (int64_t pp = 0; pp < s.pipeline; ++pp)
    for (int64_t edp = 0; edp < expert_data; ++edp)
      for (int64_t ep = 0; ep < s.expert; ++ep)
        for (int64_t etp = 0; etp < s.expert_tensor; ++etp) {
          e.expert_pipeline[next] = pp;
          RankCoordinates& c = e.coordinates[next++];
          c.expert_tensor = etp, c.expert = ep, c.expert_data = edp;
        }
  EXPECT_EQ(next, world);

  e.group_size = {{GroupKind::tensor, s.tensor},
                  {GroupKind::context, s.context},
                  {GroupKind::data, s.data},
                  {GroupKind::pipeline, s.pipeline},
                  {GroupKind::tensor_context, s.tensor * s.context},
                  {GroupKind::data_context, s.data * s.context},
                  {GroupKind::expert, s.expert},
                  {GroupKind::expert_tensor, s.expert_tensor},
                  {GroupKind::expert_data, expert_data}};
  for (GroupKind kind : kAllGroupKinds) {
    std::map<std::vector<int64_t>, std::vector<int64_t>> by_key;
    for (int64_t rank = 0; rank < world; ++rank) by_key[fixed_coordinates(kind, e.coordinates[rank])].push_back(rank);
    auto& of_rank = e.group_of_rank[kind];
    for (int64_t rank = 0; rank < world; ++rank) of_rank.push_back(by_key[fixed_coordinates(kind, e.coordinates[rank])]);
  }
  // The pipeline group as the expert folding sees it: same etp, ep, edp.
  std::map<std::vector<int64_t>, std::vector<int64_t>> by_expert_key;
  for (int64_t rank = 0; rank < world; ++rank) {
    const RankCoordinates& c = e.coordinates[rank];
    by_expert_key[{c.expert_tensor, c.expert, c.expert_data}].push_back(rank);
  }
  for (int64_t rank = 0; rank < world; ++rank) {
    const RankCoordinates& c = e.coordinates[rank];
    e.expert_folding_pipeline_group.push_back(by_expert_key[{c.expert_tensor, c.expert, c.expert_data}]);
  }
  return e;
}

// Checks every rank's coordinates and groups against the enumeration, and the invariants.
// Returns 1 once the test has failed, so that a loop over thousands of layouts stops early.
int check_layout(const ParallelSizes& s, int64_t world, int64_t num_experts) {
  const std::string name = absl::StrCat("world ", world, " tp ", s.tensor, " cp ", s.context, " dp ", s.data, " pp ",
                                        s.pipeline, " ep ", s.expert, " etp ", s.expert_tensor, " E ", num_experts);
  SCOPED_TRACE(name);
  auto failures = [] { return ::testing::Test::HasFailure() ? 1 : 0; };
  auto made = make_rank_layout(s, world, num_experts);
  EXPECT_TRUE(made.ok()) << made.status();
  if (!made.ok()) return failures();
  const RankLayout& layout = *made;
  const Enumeration e = enumerate(s, world);
  EXPECT_EQ(layout.world_size(), world);
  EXPECT_EQ(layout.expert_data_size() * s.expert * s.expert_tensor * s.pipeline, world);

  for (int64_t rank = 0; rank < world; ++rank) {
    const RankCoordinates c = layout.coordinates(rank);
    EXPECT_EQ(c, e.coordinates[rank]) << "rank " << rank;
    EXPECT_EQ(c.pipeline, e.expert_pipeline[rank]) << "rank " << rank << ": the foldings disagree on its stage";
    EXPECT_EQ(layout.attention_rank(c), rank);
    EXPECT_EQ(layout.expert_rank(c), rank);
    EXPECT_EQ(layout.group(GroupKind::pipeline, rank), e.expert_folding_pipeline_group[rank])
        << "rank " << rank << ": the expert folding has another pipeline group";
  }

  for (GroupKind kind : kAllGroupKinds) {
    SCOPED_TRACE(group_kind_name(kind));
    const int64_t size = e.group_size.at(kind);
    EXPECT_EQ(layout.group_size(kind), size);
    EXPECT_EQ(layout.num_groups(kind) * size, world);
    for (int64_t rank = 0; rank < world; ++rank) {
      const std::vector<int64_t> group = layout.group(kind, rank);
      const std::vector<int64_t>& expected = e.group_of_rank.at(kind)[rank];
      EXPECT_EQ(group, expected) << "rank " << rank;
      const int64_t position = std::find(expected.begin(), expected.end(), rank) - expected.begin();
      EXPECT_EQ(layout.rank_in_group(kind, rank), position) << "rank " << rank;
      // Expert-folding groups stay inside the rank's pipeline stage.
      if (kind != GroupKind::pipeline) {
        for (int64_t member : group) {
          EXPECT_EQ(e.coordinates[member].pipeline, e.coordinates[rank].pipeline) << "rank " << rank << ", " << member;
        }
      }
    }
    // groups() partitions the world: each rank exactly once, in the group group_index names.
    const Groups all = layout.groups(kind);
    EXPECT_EQ(static_cast<int64_t>(all.size()), world / size);
    std::vector<int> seen(world, 0);
    for (size_t index = 0; index < all.size(); ++index) {
      EXPECT_EQ(static_cast<int64_t>(all[index].size()), size);
      EXPECT_TRUE(std::is_sorted(all[index].begin(), all[index].end()));
      for (int64_t member : all[index]) {
        ++seen[member];
        EXPECT_EQ(layout.group_index(kind, member), static_cast<int64_t>(index)) << "rank " << member;
      }
    }
    EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), world);
    if (failures() > 0) return failures();
  }
  return failures();
}

std::vector<int64_t> divisors(int64_t n) {
  std::vector<int64_t> result;
  for (int64_t d = 1; d <= n; ++d) {
    if (n % d == 0) result.push_back(d);
  }
  return result;
}

// Every TP x CP x DP x PP factorization of `world`, each with every ETP x EP dividing the stage.
int64_t check_every_factorization(int64_t world) {
  int64_t layouts = 0;
  for (int64_t tp : divisors(world))
    for (int64_t cp : divisors(world / tp))
      for (int64_t dp : divisors(world / tp / cp)) {
        const int64_t pp = world / tp / cp / dp;
        const int64_t stage = tp * cp * dp;
        for (int64_t etp : divisors(stage))
          for (int64_t ep : divisors(stage / etp)) {
            const ParallelSizes sizes{
                .tensor = tp, .context = cp, .data = dp, .pipeline = pp, .expert = ep, .expert_tensor = etp};
            // 3 experts per rank, or a dense model where EP is 1.
            if (check_layout(sizes, world, ep * 3) > 0) return layouts;
            if (ep == 1 && check_layout(sizes, world, 0) > 0) return layouts;
            ++layouts;
          }
      }
  return layouts;
}

TEST(RankLayout, EveryFactorizationOfWorldsOneToSixteen) {
  int64_t layouts = 0;
  for (int64_t world = 1; world <= 16; ++world) layouts += check_every_factorization(world);
  EXPECT_EQ(layouts, 1530);  // every layout was checked (counted separately by a script)
}

// 64 = 2^6: a stage of 2^k ranks has C(k+2, 2) TP x CP x DP and as many ETP x EP choices.
TEST(RankLayout, EveryFactorizationOf64Ranks) { EXPECT_EQ(check_every_factorization(64), 1596); }

TEST(RankLayout, Mixed96And1024RankWorlds) {
  struct Case {
    int64_t world;
    ParallelSizes sizes;
    int64_t num_experts;
  };
  const Case cases[] = {
      {96, {.tensor = 2, .context = 3, .data = 4, .pipeline = 4, .expert = 8, .expert_tensor = 3}, 64},
      {96, {.tensor = 3, .data = 8, .pipeline = 4, .expert = 6}, 12},
      {1024, {.data = 1024, .expert = 64}, 256},
      {1024, {.tensor = 8, .context = 2, .data = 16, .pipeline = 4, .expert = 32, .expert_tensor = 2}, 128},
      {1024, {.tensor = 4, .data = 64, .pipeline = 4, .expert = 64}, 64},
      {1024, {.tensor = 8, .context = 4, .data = 8, .pipeline = 4, .expert = 8, .expert_tensor = 1}, 160},
      {1024, {.tensor = 2, .context = 2, .data = 2, .pipeline = 128, .expert = 8}, 8},
      {1024, {.tensor = 1024}, 0},
  };
  for (const Case& c : cases) check_layout(c.sizes, c.world, c.num_experts);
}

// layout.h's worked example, written out by hand.
TEST(RankLayout, WorkedExampleEightRanksTp2Dp2Pp2Ep2) {
  auto layout = make_rank_layout({.tensor = 2, .data = 2, .pipeline = 2, .expert = 2}, 8, 8);
  ASSERT_TRUE(layout.ok()) << layout.status();
  EXPECT_EQ(layout->groups(GroupKind::tensor), (Groups{{0, 1}, {2, 3}, {4, 5}, {6, 7}}));
  EXPECT_EQ(layout->groups(GroupKind::data), (Groups{{0, 2}, {1, 3}, {4, 6}, {5, 7}}));
  EXPECT_EQ(layout->groups(GroupKind::pipeline), (Groups{{0, 4}, {1, 5}, {2, 6}, {3, 7}}));
  EXPECT_EQ(layout->groups(GroupKind::tensor_context), (Groups{{0, 1}, {2, 3}, {4, 5}, {6, 7}}));
  EXPECT_EQ(layout->groups(GroupKind::data_context), (Groups{{0, 2}, {1, 3}, {4, 6}, {5, 7}}));
  EXPECT_EQ(layout->groups(GroupKind::expert), (Groups{{0, 1}, {2, 3}, {4, 5}, {6, 7}}));
  EXPECT_EQ(layout->groups(GroupKind::expert_data), (Groups{{0, 2}, {1, 3}, {4, 6}, {5, 7}}));
  EXPECT_EQ(layout->groups(GroupKind::expert_tensor), (Groups{{0}, {1}, {2}, {3}, {4}, {5}, {6}, {7}}));
  EXPECT_EQ(layout->experts_per_rank(), 4);
  EXPECT_EQ(layout->describe_rank(5),
            "rank 5: tp 1 cp 0 dp 0 pp 1 | etp 0 ep 1 edp 0; tensor [4 5]; context [5]; data [5 7]; pipeline [1 5]; "
            "tensor_context [4 5]; data_context [5 7]; expert [4 5]; expert_tensor [5]; expert_data [5 7]");
  EXPECT_EQ(layout->describe(),
            "8 ranks: attention PP 2 x (TP 2 x CP 1 x DP 2), experts PP 2 x (ETP 1 x EP 2 x EDP 2), 8 experts "
            "(4 per rank); order tp-cp-dp-pp / etp-ep-edp-pp");

  // EP 4 takes the whole stage: one expert-data rank per expert.
  auto wide = make_rank_layout({.tensor = 2, .data = 2, .pipeline = 2, .expert = 4}, 8, 8);
  ASSERT_TRUE(wide.ok()) << wide.status();
  EXPECT_EQ(wide->groups(GroupKind::expert), (Groups{{0, 1, 2, 3}, {4, 5, 6, 7}}));
  EXPECT_EQ(wide->groups(GroupKind::expert_data), (Groups{{0}, {1}, {2}, {3}, {4}, {5}, {6}, {7}}));
}

// The example in Megatron-Core's initialize_model_parallel docstring: 16 GPUs, TP 2, PP 4.
TEST(RankLayout, MegatronExampleSixteenRanksTp2Pp4) {
  auto layout = make_rank_layout({.tensor = 2, .data = 2, .pipeline = 4}, 16, 0);
  ASSERT_TRUE(layout.ok()) << layout.status();
  EXPECT_EQ(layout->groups(GroupKind::tensor),
            (Groups{{0, 1}, {2, 3}, {4, 5}, {6, 7}, {8, 9}, {10, 11}, {12, 13}, {14, 15}}));
  EXPECT_EQ(layout->groups(GroupKind::pipeline), (Groups{{0, 4, 8, 12}, {1, 5, 9, 13}, {2, 6, 10, 14}, {3, 7, 11, 15}}));
  EXPECT_EQ(layout->groups(GroupKind::data),
            (Groups{{0, 2}, {1, 3}, {4, 6}, {5, 7}, {8, 10}, {9, 11}, {12, 14}, {13, 15}}));
}

// CP sits between TP and DP; data_context spans both, tensor_context spans TP and CP.
TEST(RankLayout, ContextBetweenTensorAndData) {
  auto layout = make_rank_layout({.tensor = 2, .context = 2, .data = 2}, 8, 4);
  ASSERT_TRUE(layout.ok()) << layout.status();
  EXPECT_EQ(layout->group(GroupKind::context, 1), (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(layout->group(GroupKind::data, 1), (std::vector<int64_t>{1, 5}));
  EXPECT_EQ(layout->group(GroupKind::data_context, 1), (std::vector<int64_t>{1, 3, 5, 7}));
  EXPECT_EQ(layout->group(GroupKind::tensor_context, 5), (std::vector<int64_t>{4, 5, 6, 7}));
}

std::string error_of(const ParallelSizes& sizes, int64_t world, int64_t num_experts) {
  auto layout = make_rank_layout(sizes, world, num_experts);
  EXPECT_FALSE(layout.ok());
  if (layout.ok()) return "";
  EXPECT_EQ(layout.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(layout.status().message());
}

TEST(RankLayoutErrors, SizeBelowOneNamesTheKey) {
  EXPECT_EQ(error_of({.tensor = 0}, 1, 0), "parallel.tensor must be at least 1, got 0");
  EXPECT_EQ(error_of({.context = -1}, 1, 0), "parallel.context must be at least 1, got -1");
  EXPECT_EQ(error_of({.data = 0}, 1, 0), "parallel.data must be at least 1, got 0");
  EXPECT_EQ(error_of({.pipeline = 0}, 1, 0), "parallel.pipeline must be at least 1, got 0");
  EXPECT_EQ(error_of({.expert = 0}, 1, 0), "parallel.expert must be at least 1, got 0");
  EXPECT_EQ(error_of({.expert_tensor = 0}, 1, 0), "parallel.expert_tensor must be at least 1, got 0");
  EXPECT_EQ(error_of({}, 0, 0), "the world size must be at least 1, got 0");
  EXPECT_EQ(error_of({}, 1, -2), "the number of experts must be at least 0, got -2");
}

TEST(RankLayoutErrors, ProductMustEqualWorldSize) {
  EXPECT_EQ(error_of({.tensor = 2, .data = 2, .pipeline = 2}, 6, 0),
            "parallel.tensor (2) x parallel.context (1) x parallel.data (2) x parallel.pipeline (2) = 8 must equal "
            "the world size (6 ranks)");
  EXPECT_EQ(error_of({.data = 2}, 4, 0),
            "parallel.tensor (1) x parallel.context (1) x parallel.data (2) x parallel.pipeline (1) = 2 must equal "
            "the world size (4 ranks)");
  // A product that overflows int64 is refused, not wrapped around to the world size.
  EXPECT_EQ(error_of({.tensor = int64_t{1} << 32, .data = int64_t{1} << 32}, 1, 0),
            "parallel.tensor (4294967296) x parallel.context (1) x parallel.data (4294967296) x parallel.pipeline (1) "
            "must equal the world size (1 ranks)");
}

TEST(RankLayoutErrors, ExpertMustDivideExperts) {
  EXPECT_EQ(error_of({.data = 4, .expert = 4}, 4, 6), "parallel.expert (4) must divide the number of experts (6)");
  EXPECT_EQ(error_of({.data = 2, .expert = 2}, 2, 0), "parallel.expert (2) needs MoE layers, but the model has no experts");
  EXPECT_TRUE(make_rank_layout({.data = 4, .expert = 4}, 4, 4).ok());  // one expert per rank
}

TEST(RankLayoutErrors, ExpertTensorTimesExpertMustDivideStage) {
  EXPECT_EQ(error_of({.tensor = 2, .data = 2, .pipeline = 2, .expert = 3}, 8, 6),
            "parallel.expert_tensor (1) x parallel.expert (3) must divide parallel.tensor (2) x parallel.context (1) "
            "x parallel.data (2) = 4, the ranks of one pipeline stage that the expert layers fold");
  // EP 8 over 8 ranks is too many when 2 of them are pipeline stages.
  EXPECT_EQ(error_of({.tensor = 2, .data = 2, .pipeline = 2, .expert = 8}, 8, 8),
            "parallel.expert_tensor (1) x parallel.expert (8) must divide parallel.tensor (2) x parallel.context (1) "
            "x parallel.data (2) = 4, the ranks of one pipeline stage that the expert layers fold");
  EXPECT_EQ(error_of({.tensor = 2, .data = 2, .expert = 2, .expert_tensor = 4}, 4, 2),
            "parallel.expert_tensor (4) x parallel.expert (2) must divide parallel.tensor (2) x parallel.context (1) "
            "x parallel.data (2) = 4, the ranks of one pipeline stage that the expert layers fold");
  EXPECT_TRUE(make_rank_layout({.tensor = 2, .data = 2, .expert = 2, .expert_tensor = 2}, 4, 2).ok());
}

}  // namespace
}  // namespace sy::testing
