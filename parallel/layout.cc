// Rank layout: validation, and the mixed-radix arithmetic behind coordinates and groups
// (layout.h documents the order).
#include "parallel/layout.h"

#include <array>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/check.h"

namespace sy {
namespace {

// A folding is four axes, fastest first; the last is always the pipeline.
struct Folding {
  std::array<int64_t, 4> sizes;
  std::array<int64_t, 4> strides;  // strides[0] = 1, strides[a + 1] = strides[a] * sizes[a]
};

Folding make_folding(int64_t a, int64_t b, int64_t c, int64_t pipeline) {
  return Folding{{a, b, c, pipeline}, {1, a, a * b, a * b * c}};
}

// Which folding a group kind lives in and which of its axes the group spans.
struct GroupAxes {
  bool expert_folding;
  std::array<bool, 4> spans;
};

GroupAxes group_axes(GroupKind kind) {
  switch (kind) {
    case GroupKind::tensor: return {false, {true, false, false, false}};
    case GroupKind::context: return {false, {false, true, false, false}};
    case GroupKind::data: return {false, {false, false, true, false}};
    case GroupKind::pipeline: return {false, {false, false, false, true}};
    case GroupKind::tensor_context: return {false, {true, true, false, false}};
    case GroupKind::data_context: return {false, {false, true, true, false}};
    case GroupKind::expert_tensor: return {true, {true, false, false, false}};
    case GroupKind::expert: return {true, {false, true, false, false}};
    case GroupKind::expert_data: return {true, {false, false, true, false}};
  }
  SY_FAIL("unknown GroupKind ", static_cast<int>(kind));
}

std::array<int64_t, 4> digits_of(const Folding& folding, int64_t rank) {
  std::array<int64_t, 4> digits{};
  for (int axis = 0; axis < 4; ++axis) {
    digits[axis] = (rank / folding.strides[axis]) % folding.sizes[axis];
  }
  return digits;
}

// The mixed-radix number of the digits on the axes where spans[axis] == wanted, first axis fastest.
int64_t index_over(const Folding& folding, const std::array<int64_t, 4>& digits, const std::array<bool, 4>& spans,
                   bool wanted) {
  int64_t index = 0, scale = 1;
  for (int axis = 0; axis < 4; ++axis) {
    if (spans[axis] == wanted) {
      index += digits[axis] * scale;
      scale *= folding.sizes[axis];
    }
  }
  return index;
}

// Inverse of index_over: fills the digits of those axes from `index`.
void set_digits(const Folding& folding, int64_t index, const std::array<bool, 4>& spans, bool wanted,
                std::array<int64_t, 4>& digits) {
  for (int axis = 0; axis < 4; ++axis) {
    if (spans[axis] == wanted) {
      digits[axis] = index % folding.sizes[axis];
      index /= folding.sizes[axis];
    }
  }
}

int64_t rank_of(const Folding& folding, const std::array<int64_t, 4>& digits) {
  int64_t rank = 0;
  for (int axis = 0; axis < 4; ++axis) rank += digits[axis] * folding.strides[axis];
  return rank;
}

}  // namespace

const char* group_kind_name(GroupKind kind) {
  switch (kind) {
    case GroupKind::tensor: return "tensor";
    case GroupKind::context: return "context";
    case GroupKind::data: return "data";
    case GroupKind::pipeline: return "pipeline";
    case GroupKind::tensor_context: return "tensor_context";
    case GroupKind::data_context: return "data_context";
    case GroupKind::expert: return "expert";
    case GroupKind::expert_tensor: return "expert_tensor";
    case GroupKind::expert_data: return "expert_data";
  }
  return "unknown";
}

absl::StatusOr<RankLayout> make_rank_layout(const ParallelSizes& sizes, int64_t world_size, int64_t num_experts) {
  for (auto [key, value] : {std::pair{"parallel.tensor", sizes.tensor},
                            {"parallel.context", sizes.context},
                            {"parallel.data", sizes.data},
                            {"parallel.pipeline", sizes.pipeline},
                            {"parallel.expert", sizes.expert},
                            {"parallel.expert_tensor", sizes.expert_tensor}}) {
    if (value < 1) return absl::InvalidArgumentError(absl::StrCat(key, " must be at least 1, got ", value));
  }
  if (world_size < 1) return absl::InvalidArgumentError(absl::StrCat("the world size must be at least 1, got ", world_size));
  if (num_experts < 0) {
    return absl::InvalidArgumentError(absl::StrCat("the number of experts must be at least 0, got ", num_experts));
  }
  // The product of absurd sizes could overflow: it is only printed when it does not.
  int64_t product = 1;
  bool overflow = false;
  for (int64_t size : {sizes.tensor, sizes.context, sizes.data, sizes.pipeline}) {
    overflow = overflow || __builtin_mul_overflow(product, size, &product);
  }
  if (overflow || product != world_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "parallel.tensor (", sizes.tensor, ") x parallel.context (", sizes.context, ") x parallel.data (", sizes.data,
        ") x parallel.pipeline (", sizes.pipeline, ")", overflow ? "" : absl::StrCat(" = ", product),
        " must equal the world size (", world_size, " ranks)"));
  }
  const int64_t stage = sizes.tensor * sizes.context * sizes.data;
  if (num_experts == 0 && sizes.expert > 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("parallel.expert (", sizes.expert, ") needs MoE layers, but the model has no experts"));
  }
  if (num_experts > 0 && num_experts % sizes.expert != 0) {
    return absl::InvalidArgumentError(absl::StrCat("parallel.expert (", sizes.expert,
                                                   ") must divide the number of experts (", num_experts, ")"));
  }
  if (stage % sizes.expert_tensor != 0 || stage / sizes.expert_tensor % sizes.expert != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "parallel.expert_tensor (", sizes.expert_tensor, ") x parallel.expert (", sizes.expert,
        ") must divide parallel.tensor (", sizes.tensor, ") x parallel.context (", sizes.context, ") x parallel.data (",
        sizes.data, ") = ", stage, ", the ranks of one pipeline stage that the expert layers fold"));
  }
  return RankLayout(sizes, world_size, num_experts);
}

int64_t RankLayout::expert_data_size() const {
  return sizes_.tensor * sizes_.context * sizes_.data / (sizes_.expert_tensor * sizes_.expert);
}

int64_t RankLayout::experts_per_rank() const { return num_experts_ / sizes_.expert; }

namespace {

Folding attention_folding(const ParallelSizes& sizes) {
  return make_folding(sizes.tensor, sizes.context, sizes.data, sizes.pipeline);
}

Folding folding_of(const RankLayout& layout, bool expert) {
  const ParallelSizes& sizes = layout.sizes();
  return expert ? make_folding(sizes.expert_tensor, sizes.expert, layout.expert_data_size(), sizes.pipeline)
                : attention_folding(sizes);
}

}  // namespace

RankCoordinates RankLayout::coordinates(int64_t rank) const {
  SY_CHECK(rank >= 0 && rank < world_size_, "rank ", rank, " outside a world of ", world_size_);
  const auto attention = digits_of(folding_of(*this, false), rank);
  const auto expert = digits_of(folding_of(*this, true), rank);
  SY_CHECK(attention[3] == expert[3], "rank ", rank, ": pipeline stage ", attention[3], " vs ", expert[3]);
  return RankCoordinates{.tensor = attention[0],
                         .context = attention[1],
                         .data = attention[2],
                         .pipeline = attention[3],
                         .expert_tensor = expert[0],
                         .expert = expert[1],
                         .expert_data = expert[2]};
}

int64_t RankLayout::attention_rank(const RankCoordinates& c) const {
  const Folding folding = folding_of(*this, false);
  const std::array<int64_t, 4> digits{c.tensor, c.context, c.data, c.pipeline};
  for (int axis = 0; axis < 4; ++axis) {
    SY_CHECK(digits[axis] >= 0 && digits[axis] < folding.sizes[axis], "attention coordinates ", ShapeString(
        {digits.begin(), digits.end()}), " outside sizes ", ShapeString({folding.sizes.begin(), folding.sizes.end()}));
  }
  return rank_of(folding, digits);
}

int64_t RankLayout::expert_rank(const RankCoordinates& c) const {
  const Folding folding = folding_of(*this, true);
  const std::array<int64_t, 4> digits{c.expert_tensor, c.expert, c.expert_data, c.pipeline};
  for (int axis = 0; axis < 4; ++axis) {
    SY_CHECK(digits[axis] >= 0 && digits[axis] < folding.sizes[axis], "expert coordinates ", ShapeString(
        {digits.begin(), digits.end()}), " outside sizes ", ShapeString({folding.sizes.begin(), folding.sizes.end()}));
  }
  return rank_of(folding, digits);
}

int64_t RankLayout::group_size(GroupKind kind) const {
  const GroupAxes axes = group_axes(kind);
  const Folding folding = folding_of(*this, axes.expert_folding);
  int64_t size = 1;
  for (int axis = 0; axis < 4; ++axis) {
    if (axes.spans[axis]) size *= folding.sizes[axis];
  }
  return size;
}

std::vector<int64_t> RankLayout::group(GroupKind kind, int64_t rank) const {
  SY_CHECK(rank >= 0 && rank < world_size_, "rank ", rank, " outside a world of ", world_size_);
  const GroupAxes axes = group_axes(kind);
  const Folding folding = folding_of(*this, axes.expert_folding);
  std::array<int64_t, 4> digits = digits_of(folding, rank);
  const int64_t size = group_size(kind);
  std::vector<int64_t> members;
  members.reserve(size);
  // Counting the spanned digits up, first axis fastest, walks the ranks in increasing order
  // (each axis's stride exceeds every lower axis's reach).
  for (int64_t position = 0; position < size; ++position) {
    set_digits(folding, position, axes.spans, true, digits);
    members.push_back(rank_of(folding, digits));
  }
  return members;
}

int64_t RankLayout::group_index(GroupKind kind, int64_t rank) const {
  SY_CHECK(rank >= 0 && rank < world_size_, "rank ", rank, " outside a world of ", world_size_);
  const GroupAxes axes = group_axes(kind);
  const Folding folding = folding_of(*this, axes.expert_folding);
  return index_over(folding, digits_of(folding, rank), axes.spans, false);
}

int64_t RankLayout::rank_in_group(GroupKind kind, int64_t rank) const {
  SY_CHECK(rank >= 0 && rank < world_size_, "rank ", rank, " outside a world of ", world_size_);
  const GroupAxes axes = group_axes(kind);
  const Folding folding = folding_of(*this, axes.expert_folding);
  return index_over(folding, digits_of(folding, rank), axes.spans, true);
}

std::vector<std::vector<int64_t>> RankLayout::groups(GroupKind kind) const {
  const GroupAxes axes = group_axes(kind);
  const Folding folding = folding_of(*this, axes.expert_folding);
  std::vector<std::vector<int64_t>> all;
  all.reserve(num_groups(kind));
  for (int64_t index = 0; index < num_groups(kind); ++index) {
    std::array<int64_t, 4> digits{};
    set_digits(folding, index, axes.spans, false, digits);
    all.push_back(group(kind, rank_of(folding, digits)));
  }
  return all;
}

std::string RankLayout::describe() const {
  return absl::StrCat(world_size_, " ranks: attention PP ", sizes_.pipeline, " x (TP ", sizes_.tensor, " x CP ",
                      sizes_.context, " x DP ", sizes_.data, "), experts PP ", sizes_.pipeline, " x (ETP ",
                      sizes_.expert_tensor, " x EP ", sizes_.expert, " x EDP ", expert_data_size(), "), ",
                      num_experts_, " experts (", experts_per_rank(), " per rank); order tp-cp-dp-pp / etp-ep-edp-pp");
}

std::string RankLayout::describe_rank(int64_t rank) const {
  const RankCoordinates c = coordinates(rank);
  std::string text = absl::StrCat("rank ", rank, ": tp ", c.tensor, " cp ", c.context, " dp ", c.data, " pp ",
                                  c.pipeline, " | etp ", c.expert_tensor, " ep ", c.expert, " edp ", c.expert_data);
  for (GroupKind kind : kAllGroupKinds) {
    absl::StrAppend(&text, "; ", group_kind_name(kind), " [", absl::StrJoin(group(kind, rank), " "), "]");
  }
  return text;
}

}  // namespace sy
