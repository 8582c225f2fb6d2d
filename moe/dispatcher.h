// The expert-parallel token dispatcher: a rank's routed rows go to the ranks that own their
// experts by all-to-all-v, run through the owner's local grouped experts, and come back; the
// token dimension is split into chunks so that one chunk's exchange overlaps another's experts.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "core/tensor.h"
#include "moe/dispatch_local.h"
#include "parallel/communicator.h"

namespace sy {

class GroupedExperts;

// Milliseconds spent on this rank, forward and backward together, accumulated over calls.
// communication is the time the rank is blocked in the exchanges (counts included): starting
// them and waiting for them, i.e. the communication the overlap did not hide.
struct DispatchTimings {
  double permute = 0;        // permute_tokens, and the received rows into local-expert order
  double communication = 0;  // all-to-all-v launches and waits
  double experts = 0;        // the local grouped experts
  double unpermute = 0;      // back to source order, and unpermute_tokens
};

struct DispatchOptions {
  // EP group: rank p owns experts [p * E / P, (p + 1) * E / P). Null or size 1: all local,
  // the same path without exchanges.
  std::shared_ptr<Communicator> group;
  int64_t num_experts = 0;     // E, over the whole group
  int64_t overlap_chunks = 1;  // >= 1; chunks may be empty (more chunks than tokens)
  // Runs once while the first chunk's rows travel (the shared experts).
  std::function<void()> while_in_flight;
  DispatchTimings* timings = nullptr;  // null: no clocks, no extra graph nodes
};

// x (N, C) this rank's tokens; plan from plan_dispatch over all E experts on these N tokens
// (the capacity is per source rank, before dispatch, as Megatron); topk_weights (N, K);
// experts this rank's E / P local experts. -> (N, C): each token's kept slots weighted by
// their routing weights, as unpermute_tokens(experts(permute_tokens(x))) on one rank.
// Differentiable in x, topk_weights and the experts' weights. Collective over the group.
Tensor dispatch_to_experts(const Tensor& x, const DispatchPlan& plan, const Tensor& topk_weights,
                           const GroupedExperts& experts, const DispatchOptions& options);

// The pieces, public for their tests.

// One chunk of a plan: the plan rows of tokens [token_begin, token_begin + token_count), each
// expert's rows in plan order, token and slot indices relative to the chunk; padding rows
// (token -1) all go to the last chunk. Chunk boundaries are c * N / chunks.
struct DispatchChunk {
  int64_t token_begin = 0;
  int64_t token_count = 0;
  DispatchPlan plan;
};
std::vector<DispatchChunk> split_plan(const DispatchPlan& plan, int64_t N, int64_t K, int64_t chunks);

// Rows received from P source ranks, source-major, each source's rows expert-major with
// counts[p * L + j] rows for local expert j (of L). Returns index such that
// received[index] is local-expert-major (within an expert, by source rank).
std::vector<int64_t> source_to_expert_order(const std::vector<int64_t>& counts, int64_t P, int64_t L);

// The inverse permutation: inverse[order[i]] = i.
std::vector<int64_t> inverse_permutation(const std::vector<int64_t>& order);

}  // namespace sy
