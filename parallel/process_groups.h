// A rank's communicators, split once from the world by the rank layout: what the trainer,
// the MoE dispatcher and the gradient reducer take instead of building groups themselves.
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "parallel/communicator.h"
#include "parallel/layout.h"

namespace sy {

struct ProcessGroups {
  RankLayout layout;
  int64_t rank = 0;  // in the world
  std::shared_ptr<Communicator> world;
  std::shared_ptr<Communicator> data;          // DP: which samples this rank reads
  std::shared_ptr<Communicator> data_context;  // DP x CP: dense gradients, global balancing counts
  std::shared_ptr<Communicator> expert;        // EP: the ranks that split the experts
  std::shared_ptr<Communicator> expert_data;   // EDP: expert gradients

  RankCoordinates coordinates() const { return layout.coordinates(rank); }
  bool is_first_rank() const { return rank == 0; }
};

// Validates `sizes` against the world's size and the number of experts (0: dense) and splits
// every group (collective over `world`: every rank calls it). The groups inherit the world's
// collective timeout.
absl::StatusOr<ProcessGroups> make_process_groups(const ParallelSizes& sizes, int64_t num_experts,
                                                  std::shared_ptr<Communicator> world);

// One rank, every group a local communicator: the one-process world of tests and tools.
ProcessGroups single_process_groups(int64_t num_experts);

}  // namespace sy
