// Data-parallel gradient reduction (parallel/data_parallel.h): flat buckets started from
// post-accumulate hooks, the global gradient norm, parameter broadcast and agreement checks.
//
// What the hooks rely on (core/autograd/engine.cc, node.cc): every use of a leaf in one graph
// shares one AccumulateGrad node, and the engine sums all incoming gradients for a node before
// running it once, so a leaf's post-accumulate hooks fire exactly once per backward pass in
// which it takes part. A parameter is therefore "ready" at its one hook of the synchronized
// backward; a second hook before finish() means a second synchronized backward, which would
// change gradients already sent, and is refused.
#include "parallel/data_parallel.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/autograd/grad_mode.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"

namespace sy {
namespace {

// Buckets of dense parameters and of expert parameters reduce over different groups, and each
// group's collectives must start in the same order on every rank: one launch queue per kind.
constexpr int kDense = 0;
constexpr int kExpert = 1;

int kind_of(bool expert) { return expert ? kExpert : kDense; }

struct Bucket {
  int kind = kDense;
  DType dtype = DType::kF32;
  Device device;
  std::vector<int64_t> members;  // parameter indices, in buffer order
  std::vector<int64_t> offsets;  // each member's first element in `flat`
  int64_t numel = 0;             // gradient elements; `flat` adds one used-flag per member
  Tensor flat;                   // (numel + members), allocated at the first launch
  int64_t waiting = 0;           // members whose gradient has not arrived this step
  Work work;
};

}  // namespace

struct GradientReducer::State {
  explicit State(const ProcessGroups& process_groups) : groups(process_groups) {}

  ProcessGroups groups;
  std::vector<ReducedParameter> parameters;
  std::vector<Bucket> buckets;
  std::vector<int64_t> bucket_of;         // parameter -> bucket
  std::vector<int64_t> queue[2];          // buckets of each kind, in launch order
  size_t next_launch[2] = {0, 0};         // first bucket of each queue not yet launched
  std::vector<char> ready;                // parameter's gradient arrived this step
  int64_t num_ready = 0;
  int64_t num_launched = 0;
  bool sync = true;
  bool communicates = false;  // some group has more than one rank

  Communicator& communicator(int kind) const {
    return kind == kExpert ? *groups.expert_data : *groups.data_context;
  }

  void on_gradient(int64_t parameter) {
    if (!sync) return;
    SY_CHECK(!ready[parameter], "GradientReducer: parameter '", parameters[parameter].name,
             "' received a second gradient in one synchronized step; run every backward but the "
             "step's last with set_sync(false), and call finish() after the last");
    ready[parameter] = 1;
    ++num_ready;
    Bucket& bucket = buckets[bucket_of[parameter]];
    if (--bucket.waiting == 0) launch_ready(bucket.kind, /*all=*/false);
  }

  // Starts the queue's buckets in order, up to the first one still waiting (or all of them).
  void launch_ready(int kind, bool all) {
    std::vector<int64_t>& order = queue[kind];
    while (next_launch[kind] < order.size()) {
      Bucket& bucket = buckets[order[next_launch[kind]]];
      if (!all && bucket.waiting > 0) break;
      launch(bucket);
      ++next_launch[kind];
    }
  }

  void launch(Bucket& bucket) {
    NoGradGuard no_grad;
    ++num_launched;
    Communicator& group = communicator(bucket.kind);
    if (group.size() == 1) return;  // scaled in place by finish()
    const int64_t members = static_cast<int64_t>(bucket.members.size());
    if (!bucket.flat.defined()) {
      bucket.flat = Tensor::empty({bucket.numel + members}, bucket.dtype, bucket.device);
    }
    std::vector<double> used(static_cast<size_t>(members), 0.0);
    for (int64_t i = 0; i < members; ++i) {
      const Tensor& parameter = parameters[bucket.members[i]].tensor;
      Tensor slot = bucket.flat.narrow(0, bucket.offsets[i], parameter.numel()).view(parameter.shape());
      Tensor grad = parameter.grad();
      if (grad.defined()) {
        slot.copy_(grad);
        used[i] = 1.0;
      } else {
        slot.zero_();  // a parameter unused here still takes part in the sum
      }
    }
    bucket.flat.narrow(0, bucket.numel, members).copy_(Tensor::from_vector(used, {members}, bucket.dtype));
    bucket.work = group.all_reduce_async(bucket.flat, bucket.kind == kExpert ? ReduceOp::kSum : ReduceOp::kAvg);
  }

  void finish() {
    if (!communicates) return;
    NoGradGuard no_grad;
    launch_ready(kDense, /*all=*/true);
    launch_ready(kExpert, /*all=*/true);
    // Expert gradients were summed over expert_data; the job's loss is a mean over data_context.
    const double expert_scale = 1.0 / static_cast<double>(groups.data_context->size());
    for (Bucket& bucket : buckets) {
      const double scale = bucket.kind == kExpert ? expert_scale : 1.0;
      if (communicator(bucket.kind).size() == 1) {
        for (int64_t member : bucket.members) {
          Tensor grad = parameters[member].tensor.grad();
          if (grad.defined() && scale != 1.0) grad.mul_(scale);
        }
        continue;
      }
      bucket.work.wait();
      if (scale != 1.0) bucket.flat.mul_(scale);
      const int64_t members = static_cast<int64_t>(bucket.members.size());
      std::vector<double> used = bucket.flat.narrow(0, bucket.numel, members).to_vector<double>();
      for (int64_t i = 0; i < members; ++i) {
        if (used[i] <= 0.0) continue;  // no rank of the group had a gradient: stays undefined
        Tensor& parameter = parameters[bucket.members[i]].tensor;
        Tensor reduced = bucket.flat.narrow(0, bucket.offsets[i], parameter.numel()).view(parameter.shape());
        Tensor grad = parameter.grad();
        if (grad.defined()) {
          grad.copy_(reduced);
        } else {
          parameter.set_grad(reduced.clone());  // the buffer is reused by the next step
        }
      }
    }
    reset();
  }

  void reset() {
    for (Bucket& bucket : buckets) {
      bucket.waiting = static_cast<int64_t>(bucket.members.size());
    }
    std::fill(ready.begin(), ready.end(), 0);
    num_ready = 0;
    num_launched = 0;
    next_launch[kDense] = next_launch[kExpert] = 0;
  }
};

GradientReducer::GradientReducer(std::vector<ReducedParameter> parameters, const ProcessGroups& groups,
                                 double bucket_mb)
    : parameters_(std::move(parameters)), state_(std::make_shared<State>(groups)) {
  SY_CHECK(bucket_mb > 0, "GradientReducer: bucket_mb must be positive, got ", bucket_mb);
  State& state = *state_;
  state.parameters = parameters_;
  state.communicates = groups.data_context->size() > 1 || groups.expert_data->size() > 1;
  const int64_t n = static_cast<int64_t>(parameters_.size());
  for (int64_t p = 0; p < n; ++p) {
    const ReducedParameter& parameter = parameters_[p];
    SY_CHECK(parameter.tensor.defined() && parameter.tensor.is_leaf() && parameter.tensor.requires_grad(),
             "GradientReducer: parameter '", parameter.name, "' must be a leaf that requires grad");
    SY_CHECK(is_floating(parameter.tensor.dtype()), "GradientReducer: parameter '", parameter.name,
             "' has dtype ", dtype_name(parameter.tensor.dtype()), "; gradients need a floating dtype");
    for (int64_t q = 0; q < p; ++q) {
      SY_CHECK(!parameters_[q].tensor.same(parameter.tensor), "GradientReducer: parameters '",
               parameters_[q].name, "' and '", parameter.name, "' are the same tensor");
    }
  }

  // Reverse registration order; each kind/dtype/device has one open bucket, closed when the next
  // parameter would overflow it.
  const double capacity = bucket_mb * 1024.0 * 1024.0;
  std::vector<int64_t> open;
  std::vector<double> bytes;  // per bucket
  state.bucket_of.assign(static_cast<size_t>(n), -1);
  for (int64_t p = n - 1; p >= 0; --p) {
    const Tensor& tensor = parameters_[p].tensor;
    const int kind = kind_of(parameters_[p].expert);
    const double size = static_cast<double>(tensor.nbytes());
    auto same_key = [&](int64_t b) {
      const Bucket& bucket = state.buckets[b];
      return bucket.kind == kind && bucket.dtype == tensor.dtype() && bucket.device == tensor.device();
    };
    auto it = std::find_if(open.begin(), open.end(), same_key);
    if (it != open.end() && bytes[*it] + size > capacity) {
      open.erase(it);
      it = open.end();
    }
    int64_t b;
    if (it == open.end()) {
      b = static_cast<int64_t>(state.buckets.size());
      Bucket bucket;
      bucket.kind = kind;
      bucket.dtype = tensor.dtype();
      bucket.device = tensor.device();
      state.buckets.push_back(std::move(bucket));
      bytes.push_back(0.0);
      state.queue[kind].push_back(b);
      open.push_back(b);
    } else {
      b = *it;
    }
    Bucket& bucket = state.buckets[b];
    bucket.members.push_back(p);
    bucket.offsets.push_back(bucket.numel);
    bucket.numel += tensor.numel();
    bytes[b] += size;
    state.bucket_of[p] = b;
  }
  state.ready.assign(static_cast<size_t>(n), 0);
  state.reset();

  if (!state.communicates) return;
  std::weak_ptr<State> weak = state_;
  for (int64_t p = 0; p < n; ++p) {
    parameters_[p].tensor.register_post_accumulate_grad_hook([weak, p](Tensor&) {
      if (std::shared_ptr<State> alive = weak.lock()) alive->on_gradient(p);
    });
  }
}

GradientReducer::~GradientReducer() = default;

void GradientReducer::set_sync(bool sync) {
  SY_CHECK(sync || (state_->num_ready == 0 && state_->num_launched == 0),
           "GradientReducer::set_sync(false) after a synchronized backward (", state_->num_ready,
           " gradients arrived, ", state_->num_launched, " buckets started): call finish() first");
  state_->sync = sync;
}

void GradientReducer::finish() { state_->finish(); }

int64_t GradientReducer::num_buckets() const { return static_cast<int64_t>(state_->buckets.size()); }

std::vector<int64_t> GradientReducer::bucket_parameters(int64_t bucket) const {
  SY_CHECK(bucket >= 0 && bucket < num_buckets(), "bucket ", bucket, " of ", num_buckets());
  return state_->buckets[bucket].members;
}

int64_t GradientReducer::buckets_launched() const { return state_->num_launched; }

namespace {

double sum_of_squares(const Tensor& grad) {
  Tensor values = grad.detach().to(DType::kF64);
  return sum(values * values).item();
}

}  // namespace

double global_grad_norm(const std::vector<ReducedParameter>& parameters, const ProcessGroups& groups) {
  NoGradGuard no_grad;
  double dense = 0.0, expert = 0.0;
  Device device = Device::CPU();
  for (const ReducedParameter& parameter : parameters) {
    device = parameter.tensor.device();
    Tensor grad = parameter.tensor.grad();
    if (!grad.defined()) continue;
    (parameter.expert ? expert : dense) += sum_of_squares(grad);
  }
  // Expert-data replicas hold the same experts; the EP ranks hold different ones.
  if (groups.expert->size() > 1) {
    Tensor total = Tensor::full({1}, expert, DType::kF64, device);
    groups.expert->all_reduce(total, ReduceOp::kSum);
    expert = total.item();
  }
  return std::sqrt(dense + expert);
}

double clip_global_grad_norm(const std::vector<ReducedParameter>& parameters, const ProcessGroups& groups,
                             double max_norm) {
  const double norm = global_grad_norm(parameters, groups);
  if (max_norm > 0 && norm > max_norm) {
    NoGradGuard no_grad;
    const double factor = max_norm / (norm + 1e-6);
    for (const ReducedParameter& parameter : parameters) {
      Tensor grad = parameter.tensor.grad();
      if (grad.defined()) grad.mul_(factor);
    }
  }
  return norm;
}

void broadcast_parameters(const std::vector<ReducedParameter>& parameters, const ProcessGroups& groups) {
  NoGradGuard no_grad;
  struct InFlight {
    Tensor parameter, buffer;
    Work work;
  };
  std::vector<InFlight> in_flight;
  for (const ReducedParameter& parameter : parameters) {
    Communicator& group = parameter.expert ? *groups.expert_data : *groups.data_context;
    if (group.size() == 1) continue;
    Tensor buffer = parameter.tensor.is_contiguous() ? parameter.tensor.detach() : parameter.tensor.contiguous();
    Work work = group.broadcast_async(buffer, 0);
    in_flight.push_back({parameter.tensor, buffer, std::move(work)});
  }
  for (InFlight& item : in_flight) {
    item.work.wait();
    if (item.buffer.storage() != item.parameter.storage()) {
      item.parameter.copy_(item.buffer);
    } else {
      item.parameter.bump_version();
    }
  }
}

namespace {

// FNV-1a over 8-byte words: any single changed word changes the hash.
constexpr uint64_t kFnvOffset = 1469598103934665603ull;
constexpr uint64_t kFnvPrime = 1099511628211ull;

uint64_t hash_bytes(uint64_t hash, const void* data, size_t size) {
  const unsigned char* bytes = static_cast<const unsigned char*>(data);
  size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    uint64_t word;
    std::memcpy(&word, bytes + i, 8);
    hash = (hash ^ word) * kFnvPrime;
  }
  for (; i < size; ++i) hash = (hash ^ bytes[i]) * kFnvPrime;
  return hash;
}

uint64_t hash_tensor(const Tensor& tensor) {
  Tensor values = tensor.detach().contiguous();
  if (!values.device().is_cpu()) values = values.to(Device::CPU());
  uint64_t hash = hash_bytes(kFnvOffset, values.shape().data(), values.shape().size() * sizeof(int64_t));
  const int dtype = static_cast<int>(values.dtype());
  hash = hash_bytes(hash, &dtype, sizeof(dtype));
  return hash_bytes(hash, values.data_ptr(), values.nbytes());
}

uint64_t hash_names(const std::vector<ReducedParameter>& parameters, bool expert) {
  uint64_t hash = kFnvOffset;
  for (const ReducedParameter& parameter : parameters) {
    if (parameter.expert != expert) continue;
    hash = hash_bytes(hash, parameter.name.data(), parameter.name.size());
    hash = hash_bytes(hash, "\n", 1);
  }
  return hash;
}

}  // namespace

std::string check_parameters_identical(const std::vector<ReducedParameter>& parameters,
                                       const ProcessGroups& groups) {
  NoGradGuard no_grad;
  Communicator& world = *groups.world;
  const int64_t n = static_cast<int64_t>(parameters.size());
  // Every rank gathers every rank's row: [count, dense names, expert names, one hash per
  // parameter (padded to the longest list)].
  Tensor longest = Tensor::full({1}, static_cast<double>(n), DType::kI64);
  if (world.size() > 1) world.all_reduce(longest, ReduceOp::kMax);
  const int64_t width = 3 + longest.item<int64_t>();
  std::vector<int64_t> row(static_cast<size_t>(width), 0);
  auto as_signed = [](uint64_t hash) {
    int64_t value;
    std::memcpy(&value, &hash, sizeof(value));
    return value;
  };
  row[0] = n;
  row[1] = as_signed(hash_names(parameters, false));
  row[2] = as_signed(hash_names(parameters, true));
  for (int64_t p = 0; p < n; ++p) row[3 + p] = as_signed(hash_tensor(parameters[p].tensor));
  Tensor mine = Tensor::empty({1, width}, DType::kI64);
  std::memcpy(mine.data_ptr(), row.data(), row.size() * sizeof(int64_t));
  Tensor all = Tensor::empty({world.size(), width}, DType::kI64);
  if (world.size() > 1) {
    world.all_gather(mine, all);
  } else {
    all.copy_(mine);
  }
  const int64_t* table = all.data<int64_t>();
  auto at = [&](int64_t rank, int64_t column) { return table[rank * width + column]; };

  // This rank judges its own two groups (its names are right for them: expert parameters may
  // be named per EP rank). A replica must register the same parameters in the same order.
  std::string verdict;
  const int64_t rank = groups.rank;
  for (GroupKind kind : {GroupKind::data_context, GroupKind::expert_data}) {
    const std::vector<int64_t> members = groups.layout.group(kind, rank);
    for (int64_t other : members) {
      const bool same_lists = at(other, 0) == at(members[0], 0) && at(other, 1) == at(members[0], 1) &&
                              (kind == GroupKind::data_context || at(other, 2) == at(members[0], 2));
      if (verdict.empty() && !same_lists) {
        verdict = absl::StrCat("ranks ", members[0], " and ", other, " (", group_kind_name(kind), " group [",
                               absl::StrJoin(members, " "), "]) register different parameter lists (",
                               at(members[0], 0), " and ", at(other, 0), " parameters)");
      }
    }
  }
  for (int64_t p = 0; p < n && verdict.empty(); ++p) {
    const GroupKind kind = parameters[p].expert ? GroupKind::expert_data : GroupKind::data_context;
    const std::vector<int64_t> members = groups.layout.group(kind, rank);
    for (int64_t other : members) {
      if (at(other, 3 + p) != at(members[0], 3 + p)) {
        verdict = absl::StrCat("parameter '", parameters[p].name, "' differs between ranks ", members[0], " and ",
                               other, " (", group_kind_name(kind), " group [", absl::StrJoin(members, " "), "])");
        break;
      }
    }
  }
  if (world.size() == 1) return verdict;

  // Everyone gets the verdict of the lowest rank that has one.
  Tensor judge = Tensor::full({1}, static_cast<double>(verdict.empty() ? -world.size() : -rank), DType::kI64);
  world.all_reduce(judge, ReduceOp::kMax);
  const int64_t judge_rank = -judge.item<int64_t>();
  if (judge_rank == world.size()) return "";
  Tensor length = Tensor::full({1}, static_cast<double>(verdict.size()), DType::kI64);
  world.broadcast(length, static_cast<int>(judge_rank));
  std::vector<int32_t> characters(verdict.begin(), verdict.end());
  characters.resize(static_cast<size_t>(length.item<int64_t>()));
  Tensor text = Tensor::from_vector(characters, {length.item<int64_t>()}, DType::kI32);
  world.broadcast(text, static_cast<int>(judge_rank));
  std::vector<int32_t> received = text.to_vector<int32_t>();
  return std::string(received.begin(), received.end());
}

}  // namespace sy
