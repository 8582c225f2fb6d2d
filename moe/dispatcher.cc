// The expert-parallel dispatcher. Per layer: split the plan into token chunks, exchange each
// chunk's per-expert counts (one all-to-all for all chunks), then per chunk: permute, start
// the all-to-all-v to the owners, put the received rows (source-major) in local-expert order,
// run the local experts, restore source order, start the all-to-all-v back, and finally
// un-permute each chunk with its routing weights. Chunk c + 1's exchange is started before
// chunk c's experts run, and the shared experts (while_in_flight) run while chunk 0 travels;
// collectives.h says how backward keeps the same overlap.
#include "moe/dispatcher.h"

#include <chrono>
#include <numeric>

#include "core/autograd/node.h"
#include "core/ops/ops.h"
#include "moe/experts.h"
#include "parallel/collectives.h"

namespace sy {
namespace {

using Clock = std::chrono::steady_clock;

double milliseconds_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// A stage's backward time, measured between two identity nodes around it: the backward of
// the node after the stage starts the clock, the backward of the node before it stops it.
struct StageClock {
  double* total = nullptr;
  Clock::time_point started;
};

Tensor stage_mark(const Tensor& x, const std::shared_ptr<StageClock>& clock, bool before_stage) {
  Tensor out = x.detach();
  record(before_stage ? "StageEnterBackward" : "StageExitBackward", {x}, {out},
         [clock, before_stage](const std::vector<Tensor>& grads) {
           if (before_stage) {
             *clock->total += milliseconds_since(clock->started);
           } else {
             clock->started = Clock::now();
           }
           return std::vector<Tensor>{grads[0]};
         });
  return out;
}

// Runs stage(input), adding its forward and backward time to timings->*field when timings
// is set; otherwise just runs it.
template <typename Stage>
Tensor timed(DispatchTimings* timings, double DispatchTimings::*field, const Tensor& input, Stage&& stage) {
  if (timings == nullptr) return stage(input);
  auto clock = std::make_shared<StageClock>();
  clock->total = &(timings->*field);
  const Tensor entered = stage_mark(input, clock, true);
  const Clock::time_point start = Clock::now();
  Tensor out = stage(entered);
  timings->*field += milliseconds_since(start);
  return stage_mark(out, clock, false);
}

int64_t sum_of(const int64_t* begin, int64_t count) { return std::accumulate(begin, begin + count, int64_t{0}); }

// What one chunk sends and receives.
struct ChunkRoute {
  std::vector<int64_t> send_rows;      // (P) rows to each rank
  std::vector<int64_t> recv_rows;      // (P) rows from each rank
  std::vector<int64_t> received;       // (P * L) rows from rank p for local expert j
  std::vector<int64_t> local_counts;   // (L) rows per local expert, all sources
};

}  // namespace

std::vector<DispatchChunk> split_plan(const DispatchPlan& plan, int64_t N, int64_t K, int64_t chunks) {
  SY_CHECK(chunks >= 1 && N >= 0 && K >= 1, "split_plan: chunks ", chunks, ", N ", N, ", K ", K);
  const int64_t E = static_cast<int64_t>(plan.tokens_per_expert.size());
  const std::vector<int64_t> tokens = plan.token_index.to_vector<int64_t>();
  const std::vector<int64_t> slots = plan.slot_index.to_vector<int64_t>();
  SY_CHECK(static_cast<int64_t>(tokens.size()) == sum_of(plan.tokens_per_expert.data(), E),
           "split_plan: ", tokens.size(), " plan rows for tokens_per_expert summing to ",
           sum_of(plan.tokens_per_expert.data(), E));
  std::vector<DispatchChunk> result(chunks);
  std::vector<int64_t> chunk_of_token(N);
  for (int64_t c = 0; c < chunks; ++c) {
    result[c].token_begin = c * N / chunks;
    result[c].token_count = (c + 1) * N / chunks - result[c].token_begin;
    for (int64_t t = 0; t < result[c].token_count; ++t) chunk_of_token[result[c].token_begin + t] = c;
  }
  std::vector<std::vector<int64_t>> chunk_tokens(chunks), chunk_slots(chunks);
  for (DispatchChunk& chunk : result) chunk.plan.tokens_per_expert.assign(E, 0);
  int64_t row = 0;
  for (int64_t e = 0; e < E; ++e) {
    for (int64_t r = 0; r < plan.tokens_per_expert[e]; ++r, ++row) {
      const int64_t token = tokens[row];
      SY_CHECK(token < N, "split_plan: token ", token, " of a plan row for N = ", N);
      const int64_t c = token < 0 ? chunks - 1 : chunk_of_token[token];
      DispatchChunk& chunk = result[c];
      chunk_tokens[c].push_back(token < 0 ? -1 : token - chunk.token_begin);
      chunk_slots[c].push_back(token < 0 ? -1 : slots[row] - chunk.token_begin * K);
      chunk.plan.tokens_per_expert[e] += 1;
      chunk.plan.padded += token < 0 ? 1 : 0;
    }
  }
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t M = static_cast<int64_t>(chunk_tokens[c].size());
    result[c].plan.token_index = Tensor::from_vector(chunk_tokens[c], {M}, DType::kI64);
    result[c].plan.slot_index = Tensor::from_vector(chunk_slots[c], {M}, DType::kI64);
  }
  result[0].plan.dropped = plan.dropped;
  return result;
}

std::vector<int64_t> source_to_expert_order(const std::vector<int64_t>& counts, int64_t P, int64_t L) {
  SY_CHECK(static_cast<int64_t>(counts.size()) == P * L, "source_to_expert_order: ", counts.size(),
           " counts for P = ", P, " and L = ", L);
  // Where each (source, expert) block starts among the received rows.
  std::vector<int64_t> block_start(P * L);
  int64_t offset = 0;
  for (int64_t i = 0; i < P * L; ++i) {
    block_start[i] = offset;
    offset += counts[i];
  }
  std::vector<int64_t> order;
  order.reserve(offset);
  for (int64_t j = 0; j < L; ++j) {
    for (int64_t p = 0; p < P; ++p) {
      for (int64_t r = 0; r < counts[p * L + j]; ++r) order.push_back(block_start[p * L + j] + r);
    }
  }
  return order;
}

std::vector<int64_t> inverse_permutation(const std::vector<int64_t>& order) {
  std::vector<int64_t> inverse(order.size());
  for (size_t i = 0; i < order.size(); ++i) inverse[order[i]] = static_cast<int64_t>(i);
  return inverse;
}

Tensor dispatch_to_experts(const Tensor& x, const DispatchPlan& plan, const Tensor& topk_weights,
                           const GroupedExperts& experts, const DispatchOptions& options) {
  SY_CHECK(x.dim() == 2 && topk_weights.dim() == 2 && topk_weights.size(0) == x.size(0),
           "dispatch_to_experts: x ", ShapeString(x.shape()), " and topk_weights ", ShapeString(topk_weights.shape()),
           " (expected (N, C) and (N, K))");
  const int64_t N = x.size(0), K = topk_weights.size(1), E = options.num_experts;
  const std::shared_ptr<Communicator>& group = options.group;
  const int64_t P = group ? group->size() : 1;
  const bool exchange = P > 1;
  SY_CHECK(E > 0 && E % P == 0, "dispatch_to_experts: E = ", E, " experts over an EP group of ", P);
  const int64_t L = E / P;
  SY_CHECK(static_cast<int64_t>(plan.tokens_per_expert.size()) == E, "dispatch_to_experts: a plan over ",
           plan.tokens_per_expert.size(), " experts for E = ", E);
  SY_CHECK(experts.w1().size(0) == L, "dispatch_to_experts: ", experts.w1().size(0), " local experts, expected E / P = ",
           L);
  DispatchTimings* timings = options.timings;

  const std::vector<DispatchChunk> chunks = split_plan(plan, N, K, options.overlap_chunks);
  const int64_t S = static_cast<int64_t>(chunks.size());

  // Counts to rank p for its local expert j, chunk-major per rank: send[(p * S + c) * L + j].
  std::vector<int64_t> send_counts(P * S * L), recv_counts(P * S * L);
  for (int64_t p = 0; p < P; ++p) {
    for (int64_t c = 0; c < S; ++c) {
      for (int64_t j = 0; j < L; ++j) send_counts[(p * S + c) * L + j] = chunks[c].plan.tokens_per_expert[p * L + j];
    }
  }
  if (exchange) {
    const Clock::time_point start = Clock::now();
    // On the tokens' device: the group's backend (MPI: CPU, NCCL: CUDA) takes those.
    Tensor sent = Tensor::from_vector(send_counts, {P * S * L}, DType::kI64).to(x.device());
    Tensor received = Tensor::empty({P * S * L}, DType::kI64, x.device());
    const std::vector<int64_t> rows(P, S * L);
    group->all_to_all_v(sent, rows, received, rows);
    recv_counts = received.to(Device::CPU()).to_vector<int64_t>();
    if (timings) timings->communication += milliseconds_since(start);
  } else {
    recv_counts = send_counts;
  }
  std::vector<ChunkRoute> routes(S);
  for (int64_t c = 0; c < S; ++c) {
    ChunkRoute& route = routes[c];
    route.local_counts.assign(L, 0);
    for (int64_t p = 0; p < P; ++p) {
      route.send_rows.push_back(sum_of(&send_counts[(p * S + c) * L], L));
      route.recv_rows.push_back(sum_of(&recv_counts[(p * S + c) * L], L));
      for (int64_t j = 0; j < L; ++j) {
        route.received.push_back(recv_counts[(p * S + c) * L + j]);
        route.local_counts[j] += recv_counts[(p * S + c) * L + j];
      }
    }
  }

  std::vector<Tensor> permuted(S);
  for (int64_t c = 0; c < S; ++c) {
    permuted[c] = timed(timings, &DispatchTimings::permute, x, [&](const Tensor& in) {
      return permute_tokens(in.narrow(0, chunks[c].token_begin, chunks[c].token_count), chunks[c].plan);
    });
  }
  // Rows to their owners and back, each a start now and a wait later.
  auto start_exchange = [&](const Tensor& rows, const std::vector<int64_t>& send_rows,
                            const std::vector<int64_t>& recv_rows) {
    std::shared_ptr<AllToAllInFlight> in_flight;
    Tensor output = timed(timings, &DispatchTimings::communication, rows, [&](const Tensor& in) {
      StartedAllToAll started = all_to_all_v_start(in, send_rows, recv_rows, group);
      in_flight = started.in_flight;
      return started.output;
    });
    return StartedAllToAll{output, in_flight};
  };
  auto wait_exchange = [&](const StartedAllToAll& started) {
    return timed(timings, &DispatchTimings::communication, started.output, [&](const Tensor& in) {
      return all_to_all_v_wait(StartedAllToAll{in, started.in_flight});
    });
  };

  std::vector<StartedAllToAll> outbound(S), inbound(S);
  if (exchange) outbound[0] = start_exchange(permuted[0], routes[0].send_rows, routes[0].recv_rows);
  if (options.while_in_flight) options.while_in_flight();
  std::vector<Tensor> returned(S);
  for (int64_t c = 0; c < S; ++c) {
    if (exchange && c + 1 < S) outbound[c + 1] = start_exchange(permuted[c + 1], routes[c + 1].send_rows, routes[c + 1].recv_rows);
    Tensor rows = permuted[c];
    std::vector<int64_t> order;
    if (exchange) {
      order = source_to_expert_order(routes[c].received, P, L);
      const Tensor index = Tensor::from_vector(order, {static_cast<int64_t>(order.size())}, DType::kI64).to(x.device());
      rows = timed(timings, &DispatchTimings::permute, wait_exchange(outbound[c]),
                   [&](const Tensor& in) { return index_select(in, 0, index); });
    }
    Tensor out = timed(timings, &DispatchTimings::experts, rows,
                       [&](const Tensor& in) { return experts.forward(in, routes[c].local_counts); });
    if (exchange) {
      const std::vector<int64_t> inverse = inverse_permutation(order);
      const Tensor index =
          Tensor::from_vector(inverse, {static_cast<int64_t>(inverse.size())}, DType::kI64).to(x.device());
      out = timed(timings, &DispatchTimings::unpermute, out, [&](const Tensor& in) { return index_select(in, 0, index); });
      inbound[c] = start_exchange(out, routes[c].recv_rows, routes[c].send_rows);
    }
    returned[c] = out;
  }

  std::vector<Tensor> outputs(S);
  for (int64_t c = 0; c < S; ++c) {
    const Tensor rows = exchange ? wait_exchange(inbound[c]) : returned[c];
    const DispatchChunk& chunk = chunks[c];
    outputs[c] = timed(timings, &DispatchTimings::unpermute, rows, [&](const Tensor& in) {
      return unpermute_tokens(in, chunk.plan, topk_weights.narrow(0, chunk.token_begin, chunk.token_count),
                              chunk.token_count);
    });
  }
  return S == 1 ? outputs[0] : cat(outputs, 0);
}

}  // namespace sy
