// The rank layout: from the parallel sizes, which global ranks form each parallel group, for
// attention/dense layers and for expert layers (MoE parallel folding), in Megatron-Core's order.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace sy {

// The `parallel:` sizes of a config (launch's ParallelConfig has the same fields).
struct ParallelSizes {
  int64_t tensor = 1, context = 1, data = 1, pipeline = 1, expert = 1, expert_tensor = 1;
  bool operator==(const ParallelSizes&) const = default;
};

// Rank order. The world is folded twice over the same ranks:
//
//   attention and dense layers:  world = PP x (TP x CP x DP),    order tp-cp-dp-pp
//   expert layers:               world = PP x (ETP x EP x EDP),  order etp-ep-edp-pp
//
// The first name varies fastest: a rank's coordinates are the mixed-radix digits of its
// number, tp = rank % TP, cp = (rank / TP) % CP, dp = (rank / (TP CP)) % DP,
// pp = rank / (TP CP DP), and likewise etp, ep, edp, pp in the expert folding, with the
// expert-data size EDP = TP CP DP / (ETP EP). This is Megatron-Core's RankGenerator with its
// default order "tp-cp-ep-dp-pp": its decoder generator has ep = 1 and its expert generator
// cp = 1, so configurations and rank maps users know carry over. Consequences:
// - TP (and ETP, then EP) take adjacent ranks, which `mpirun` places on the same node, so
//   the chattiest groups stay inside a node.
// - PP is slowest and its stride TP CP DP = ETP EP EDP is the same in both foldings: a rank
//   has the same pipeline stage and the same pipeline group in both, and the expert folding
//   only regroups the ranks of one stage.
// - A group is every rank that differs from this one only in the group's coordinates; its
//   list is sorted by global rank, which is also the order of those coordinates (fastest
//   first), so a rank's position in its group is its coordinate(s) in the group.
//
// Worked example: 8 ranks, TP 2, DP 2, PP 2 (CP 1), and EP 2 (ETP 1, so EDP = 4 / 2 = 2).
//
//   rank            0  1  2  3  4  5  6  7
//   tp              0  1  0  1  0  1  0  1
//   dp              0  0  1  1  0  0  1  1
//   pp              0  0  0  0  1  1  1  1
//   ep              0  1  0  1  0  1  0  1
//   edp             0  0  1  1  0  0  1  1
//
//   tensor        [0 1] [2 3] [4 5] [6 7]     pipeline      [0 4] [1 5] [2 6] [3 7]
//   data          [0 2] [1 3] [4 6] [5 7]     tensor x ctx  [0 1] [2 3] [4 5] [6 7]
//   expert        [0 1] [2 3] [4 5] [6 7]     expert_data   [0 2] [1 3] [4 6] [5 7]
//
// With ETP 1 the experts are spread over the ranks TP uses (EP takes the fastest slot), and
// expert gradients reduce over expert_data. With EP 4 instead, EDP = 1: expert groups
// [0 1 2 3] [4 5 6 7], and each expert_data group is a single rank.

struct RankCoordinates {
  // Attention/dense folding.
  int64_t tensor = 0, context = 0, data = 0, pipeline = 0;
  // Expert folding (the pipeline stage is the same).
  int64_t expert_tensor = 0, expert = 0, expert_data = 0;
  bool operator==(const RankCoordinates&) const = default;
};

enum class GroupKind {
  tensor,          // TP
  context,         // CP
  data,            // DP (without CP)
  pipeline,        // PP, the same in both foldings
  tensor_context,  // TP x CP: the model-parallel ranks within a stage
  data_context,    // DP x CP: dense gradient reduction, global load-balancing counts
  expert,          // EP: the ranks that split the experts
  expert_tensor,   // ETP
  expert_data,     // EDP: expert gradient reduction
};
inline constexpr GroupKind kAllGroupKinds[] = {
    GroupKind::tensor,         GroupKind::context,      GroupKind::data,
    GroupKind::pipeline,       GroupKind::tensor_context, GroupKind::data_context,
    GroupKind::expert,         GroupKind::expert_tensor,  GroupKind::expert_data};
const char* group_kind_name(GroupKind kind);

class RankLayout {
 public:
  RankLayout() = default;  // one rank, dense
  const ParallelSizes& sizes() const { return sizes_; }
  int64_t world_size() const { return world_size_; }
  int64_t num_experts() const { return num_experts_; }
  int64_t expert_data_size() const;  // EDP = TP CP DP / (ETP EP)
  int64_t experts_per_rank() const;  // E / EP (0 for a dense model)

  RankCoordinates coordinates(int64_t rank) const;
  // The inverse of coordinates() for each folding (the expert fields, or the attention fields, are ignored).
  int64_t attention_rank(const RankCoordinates& coordinates) const;
  int64_t expert_rank(const RankCoordinates& coordinates) const;

  int64_t group_size(GroupKind kind) const;
  int64_t num_groups(GroupKind kind) const { return world_size_ / group_size(kind); }
  // The sorted global ranks of `rank`'s group of this kind.
  std::vector<int64_t> group(GroupKind kind, int64_t rank) const;
  // Which group of this kind `rank` is in (0 .. num_groups - 1), and its position in it:
  // the color and key of an MPI_Comm_split.
  int64_t group_index(GroupKind kind, int64_t rank) const;
  int64_t rank_in_group(GroupKind kind, int64_t rank) const;
  // Every group of this kind, ordered by group_index.
  std::vector<std::vector<int64_t>> groups(GroupKind kind) const;

  // One line for logs: the sizes of both foldings and the order.
  std::string describe() const;
  // One line for `rank`: its coordinates and its groups.
  std::string describe_rank(int64_t rank) const;

 private:
  friend absl::StatusOr<RankLayout> make_rank_layout(const ParallelSizes&, int64_t, int64_t);
  RankLayout(const ParallelSizes& sizes, int64_t world_size, int64_t num_experts)
      : sizes_(sizes), world_size_(world_size), num_experts_(num_experts) {}

  ParallelSizes sizes_;
  int64_t world_size_ = 1;
  int64_t num_experts_ = 0;
};

// Validates the sizes against the world and the number of experts (0: a dense model, which
// needs EP 1): every size >= 1, TP x CP x DP x PP = world size, EP divides the experts, and
// ETP x EP divides TP x CP x DP. Messages name the keys (parallel.*) and their values.
absl::StatusOr<RankLayout> make_rank_layout(const ParallelSizes& sizes, int64_t world_size, int64_t num_experts);

}  // namespace sy
