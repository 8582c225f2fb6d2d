// Collectives as autograd ops, gradient-checked over the whole group: the function is the
// sum of every rank's loss, each finite difference perturbs one element on one rank, and
// the analytic gradient is what each rank's own backward produced (in f64).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>

#include "core/autograd/grad_mode.h"
#include "core/ops/ops.h"
#include "parallel/collectives.h"

namespace sy {
namespace {

// Distinct, rank-dependent values so that a gradient routed to the wrong rank or row shows.
Tensor pattern(const Shape& shape, int rank, double scale) {
  std::vector<double> v(static_cast<size_t>(shape_numel(shape)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = scale * std::sin(1.0 + 0.7 * i + 1.3 * rank);
  return Tensor::from_vector<double>(v, shape, DType::kF64);
}

// local_loss(x) on each rank; `replicated`: the loss is the same on every rank and counts
// once (Megatron's copy/reduce convention), and each rank perturbs the same element at once.
void check_group_gradient(const Shape& shape,
                          const std::function<Tensor(const Tensor&)>& local_loss,
                          bool replicated = false) {
  auto world = world_communicator();
  int n = world->size(), r = world->rank();
  Tensor x = pattern(shape, replicated ? 0 : r, 1.0);
  Tensor leaf = x.clone().set_requires_grad(true);
  local_loss(leaf).backward();
  std::vector<double> analytic = leaf.grad().to_vector<double>();

  auto group_value = [&](const Tensor& input) {
    NoGradGuard no_grad;
    Tensor value = local_loss(input).detach().clone().reshape({1});
    if (!replicated) world->all_reduce(value, ReduceOp::kSum);
    return value.item();
  };
  // Ranks may hold different numbers of elements; all loop to the largest count.
  Tensor count = Tensor::full({1}, double(x.numel()), DType::kI64);
  world->all_reduce(count, ReduceOp::kMax);
  const double h = 1e-6;
  for (int owner = 0; owner < (replicated ? 1 : n); ++owner) {
    for (int64_t i = 0; i < count.item<int64_t>(); ++i) {
      bool mine = (replicated || owner == r) && i < x.numel();
      auto shifted = [&](double delta) {
        Tensor y = x.clone();
        if (mine) y.data<double>()[i] += delta;
        return group_value(y);
      };
      double numeric = (shifted(h) - shifted(-h)) / (2 * h);
      if (mine) {
        EXPECT_NEAR(analytic[i], numeric, 1e-6 * (1 + std::abs(numeric)))
            << "rank " << r << " element " << i;
      }
    }
  }
}

TEST(WorldCollectives, AllGatherGradientIsReduceScatter) {
  int n = world_communicator()->size(), r = world_communicator()->rank();
  check_group_gradient({2, 3}, [&](const Tensor& x) {
    Tensor y = all_gather(x, world_communicator());
    return sum(y * pattern({2 * n, 3}, r, 0.5));
  });
}

TEST(WorldCollectives, ReduceScatterGradientIsAllGather) {
  int n = world_communicator()->size(), r = world_communicator()->rank();
  check_group_gradient({2 * n, 3}, [&](const Tensor& x) {
    Tensor y = reduce_scatter(x, world_communicator());
    return sum(y * pattern({2, 3}, r, 0.5));
  });
}

TEST(WorldCollectives, AllToAllVGradientSwapsCounts) {
  // Rank r sends (r + p) % 3 rows to rank p: uneven, some zero.
  auto world = world_communicator();
  int n = world->size(), r = world->rank();
  std::vector<int64_t> send_rows(n), recv_rows(n);
  for (int p = 0; p < n; ++p) {
    send_rows[p] = (r + p) % 3;
    recv_rows[p] = (p + r) % 3;
  }
  int64_t sent = 0, received = 0;
  for (int p = 0; p < n; ++p) sent += send_rows[p], received += recv_rows[p];
  check_group_gradient({sent, 2}, [&](const Tensor& x) {
    Tensor y = all_to_all_v(x, send_rows, recv_rows, world);
    return sum(y * y * pattern({received, 2}, r, 0.5));
  });
}

TEST(WorldCollectives, AllReduceSumGradientIsAllReduce) {
  int r = world_communicator()->rank();
  check_group_gradient({3}, [&](const Tensor& x) {
    Tensor y = all_reduce_sum(x * x, world_communicator());
    return sum(y * pattern({3}, r, 0.5));
  });
}

TEST(WorldCollectives, CopyToGroupThenReduceFromGroupOnReplicatedLoss) {
  // x and the loss are replicated; each rank applies its own weights in between (a
  // tensor-parallel block): y = sum_r a_r * x, dL/dx = w * sum_r a_r.
  int r = world_communicator()->rank();
  check_group_gradient(
      {4},
      [&](const Tensor& x) {
        Tensor y = reduce_from_group(copy_to_group(x, world_communicator()) * pattern({4}, r, 1.0),
                                     world_communicator());
        return sum(y * y * pattern({4}, 0, 0.5));
      },
      /*replicated=*/true);
}

}  // namespace
}  // namespace sy
