// The NCCL backend against the same expectations as the MPI one; needs a GPU per rank.
#include <gtest/gtest.h>

#include "parallel/nccl_communicator.h"

namespace sy {
namespace {

std::shared_ptr<Communicator> nccl_world_or_skip_reason(std::string* reason) {
  auto world = world_communicator();
  if (!nccl_available()) {
    *reason = "needs a CUDA build and a GPU";
    return nullptr;
  }
  return make_nccl_communicator(world, 0);
}

TEST(WorldNccl, AllReduceAllGatherAllToAllV) {
  std::string reason;
  if (world_communicator()->size() > 1) GTEST_SKIP() << "one GPU per rank is not set up in tests";
  auto nccl = nccl_world_or_skip_reason(&reason);
  if (!nccl) GTEST_SKIP() << reason;
  Device gpu = Device::CUDA(0);
  Tensor x = Tensor::from_vector<float>({1, 2, 3, 4}, {2, 2}).to(gpu);
  nccl->all_reduce(x, ReduceOp::kAvg);
  EXPECT_EQ(x.to(Device::CPU()).to_vector<float>(), (std::vector<float>{1, 2, 3, 4}));
  Tensor gathered = Tensor::zeros({2, 2}, DType::kF32, gpu);
  nccl->all_gather(x, gathered);
  EXPECT_EQ(gathered.to(Device::CPU()).to_vector<float>(), (std::vector<float>{1, 2, 3, 4}));
  Tensor exchanged = Tensor::zeros({2, 2}, DType::kBF16, gpu);
  nccl->all_to_all_v(x.to(DType::kBF16), {2}, exchanged, {2});
  EXPECT_EQ(exchanged.to(Device::CPU()).to(DType::kF32).to_vector<float>(),
            (std::vector<float>{1, 2, 3, 4}));
  nccl->barrier();
}

}  // namespace
}  // namespace sy
