// Communicator backends: each collective's result against values every rank can compute.
// The World* tests run on any world size (1 rank without mpirun); MultiRank* need 2+.
#include <gtest/gtest.h>

#include <numeric>

#include "parallel/communicator.h"
#include "parallel/local_communicator.h"

namespace sy {
namespace {

std::vector<double> values(const Tensor& t) { return t.to(DType::kF64).to_vector<double>(); }

TEST(LocalCommunicator, CollectivesCopy) {
  LocalCommunicator local;
  Tensor x = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {3, 2});
  local.all_reduce(x, ReduceOp::kAvg);
  EXPECT_EQ(values(x), (std::vector<double>{1, 2, 3, 4, 5, 6}));
  Tensor gathered = Tensor::zeros({3, 2});
  local.all_gather(x, gathered);
  EXPECT_EQ(values(gathered), values(x));
  Tensor exchanged = Tensor::zeros({3, 2});
  local.all_to_all_v(x, {3}, exchanged, {3});
  EXPECT_EQ(values(exchanged), values(x));
  local.send(x, 0, 7);
  Tensor received = Tensor::zeros({3, 2});
  local.recv(received, 0, 7);
  EXPECT_EQ(values(received), values(x));
}

TEST(LocalCommunicator, MismatchedCountsFail) {
  LocalCommunicator local;
  Tensor x = Tensor::zeros({3, 2});
  Tensor out = Tensor::zeros({2, 2});
  EXPECT_THROW(local.all_to_all_v(x, {3}, out, {2}), Error);
  EXPECT_THROW(local.recv(out, 0, 1), Error);  // nothing was sent: fails instead of hanging
}

TEST(WorldCommunicator, AllReduceSumAvgMaxEachDtype) {
  auto world = world_communicator();
  int n = world->size(), r = world->rank();
  for (DType dtype : {DType::kF32, DType::kF64, DType::kBF16, DType::kI64}) {
    Tensor x = Tensor::from_vector<double>({double(r + 1), double(-r)}, {2}).to(dtype);
    world->all_reduce(x, ReduceOp::kSum);
    EXPECT_EQ(values(x), (std::vector<double>{n * (n + 1) / 2.0, -n * (n - 1) / 2.0}))
        << dtype_name(dtype);
    Tensor m = Tensor::from_vector<double>({double(r), double(-r)}, {2}).to(dtype);
    world->all_reduce(m, ReduceOp::kMax);
    EXPECT_EQ(values(m), (std::vector<double>{double(n - 1), 0.0})) << dtype_name(dtype);
  }
  Tensor a = Tensor::from_vector<double>({double(r)}, {1}, DType::kF64);
  world->all_reduce(a, ReduceOp::kAvg);
  EXPECT_DOUBLE_EQ(a.item(), (n - 1) / 2.0);
  Tensor i = Tensor::zeros({1}, DType::kI64);
  EXPECT_THROW(world->all_reduce(i, ReduceOp::kAvg), Error);
}

TEST(WorldCommunicator, AllGatherAndReduceScatter) {
  auto world = world_communicator();
  int n = world->size(), r = world->rank();
  Tensor mine = Tensor::from_vector<double>({double(r), 10.0 + r}, {1, 2}, DType::kF64);
  Tensor all = Tensor::zeros({n, 2}, DType::kF64);
  world->all_gather(mine, all);
  std::vector<double> expected;
  for (int p = 0; p < n; ++p) expected.insert(expected.end(), {double(p), 10.0 + p});
  EXPECT_EQ(values(all), expected);

  // Every rank contributes row p = p * (r + 1); rank p keeps the sum over r.
  std::vector<double> rows;
  for (int p = 0; p < n; ++p) rows.push_back(double(p * (r + 1)));
  Tensor input = Tensor::from_vector<double>(rows, {n, 1}, DType::kF64);
  Tensor out = Tensor::zeros({1, 1}, DType::kF64);
  world->reduce_scatter(input, out, ReduceOp::kSum);
  EXPECT_DOUBLE_EQ(out.item(), double(r) * n * (n + 1) / 2);
}

TEST(WorldCommunicator, AllToAllVWithEmptyPeers) {
  // Rank r sends p rows to rank p (so rank 0 receives nothing), each row (r, p, k).
  auto world = world_communicator();
  int n = world->size(), r = world->rank();
  std::vector<int64_t> send_rows(n), recv_rows(n, r);
  std::vector<double> data;
  for (int p = 0; p < n; ++p) {
    send_rows[p] = p;
    for (int k = 0; k < p; ++k) data.insert(data.end(), {double(r), double(p), double(k)});
  }
  int64_t sent = std::accumulate(send_rows.begin(), send_rows.end(), int64_t{0});
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kI64}) {
    Tensor input = Tensor::from_vector<double>(data, {sent, 3}, DType::kF64).to(dtype);
    Tensor output = Tensor::zeros({int64_t(n) * r, 3}, dtype);
    world->all_to_all_v(input, send_rows, output, recv_rows);
    std::vector<double> expected;
    for (int p = 0; p < n; ++p)
      for (int k = 0; k < r; ++k) expected.insert(expected.end(), {double(p), double(r), double(k)});
    EXPECT_EQ(values(output), expected) << dtype_name(dtype);
  }
}

TEST(WorldCommunicator, BroadcastAndNonBlockingWait) {
  auto world = world_communicator();
  int n = world->size(), r = world->rank();
  Tensor x = Tensor::full({4}, r == n - 1 ? 7.0 : 0.0);
  Work work = world->broadcast_async(x, n - 1);
  Tensor y = Tensor::full({1}, 1.0);
  Work sum = world->all_reduce_async(y, ReduceOp::kSum);
  work.wait();
  sum.wait();
  EXPECT_TRUE(work.completed());
  EXPECT_EQ(values(x), (std::vector<double>(4, 7.0)));
  EXPECT_EQ(y.item(), double(n));
  world->barrier();
}

TEST(MultiRankCommunicator, SendRecvRing) {
  auto world = world_communicator();
  int n = world->size(), r = world->rank();
  if (n == 1) GTEST_SKIP() << "needs 2+ ranks (run under mpirun, ctest -L multirank)";
  Tensor out = Tensor::full({3}, double(r));
  Tensor in = Tensor::zeros({3});
  Work received = world->recv_async(in, (r + n - 1) % n, 5);
  world->send(out, (r + 1) % n, 5);
  received.wait();
  EXPECT_EQ(values(in), (std::vector<double>(3, double((r + n - 1) % n))));
}

TEST(MultiRankCommunicator, SplitEvenOddRanks) {
  auto world = world_communicator();
  int n = world->size(), r = world->rank();
  if (n == 1) GTEST_SKIP() << "needs 2+ ranks (run under mpirun, ctest -L multirank)";
  // Key -r reverses the order inside each group.
  auto group = world->split(r % 2, -r);
  int members = (n - r % 2 + 1) / 2;
  EXPECT_EQ(group->size(), members);
  EXPECT_EQ(group->rank(), members - 1 - r / 2);
  Tensor x = Tensor::full({1}, double(r));
  group->all_reduce(x, ReduceOp::kSum);
  double expected = 0;
  for (int p = r % 2; p < n; p += 2) expected += p;
  EXPECT_EQ(x.item(), expected);
}

}  // namespace
}  // namespace sy
