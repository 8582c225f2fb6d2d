// Splits the world into the groups of the rank layout (parallel/process_groups.h).
#include "parallel/process_groups.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "core/check.h"
#include "parallel/local_communicator.h"

namespace sy {

absl::StatusOr<ProcessGroups> make_process_groups(const ParallelSizes& sizes, int64_t num_experts,
                                                  std::shared_ptr<Communicator> world) {
  absl::StatusOr<RankLayout> layout = make_rank_layout(sizes, world->size(), num_experts);
  if (!layout.ok()) return layout.status();
  ProcessGroups groups{.layout = *layout, .rank = world->rank(), .world = std::move(world)};
  auto split = [&](GroupKind kind) {
    return groups.world->split(static_cast<int>(groups.layout.group_index(kind, groups.rank)),
                               static_cast<int>(groups.layout.rank_in_group(kind, groups.rank)));
  };
  // Every rank splits in the same order: each split is collective over the world.
  groups.data = split(GroupKind::data);
  groups.data_context = split(GroupKind::data_context);
  groups.expert = split(GroupKind::expert);
  groups.expert_data = split(GroupKind::expert_data);
  return groups;
}

ProcessGroups single_process_groups(int64_t num_experts) {
  absl::StatusOr<ProcessGroups> groups =
      make_process_groups(ParallelSizes(), num_experts, std::make_shared<LocalCommunicator>());
  SY_CHECK(groups.ok(), "single_process_groups: ", groups.status().message());
  return *groups;
}

}  // namespace sy
