// A failing rank must end the whole job. Runs only when SY_INJECT_FAILURE names the failure
// (kill | throw | abort | exit | hang) of rank 1; failure_injection.sh runs it under mpirun and checks the
// job's exit status, its duration and the message.
#include <gtest/gtest.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "parallel/communicator.h"

namespace sy {
namespace {

TEST(FailureInjection, RankOneFailsDuringAllReduce) {
  const char* mode = std::getenv("SY_INJECT_FAILURE");
  if (mode == nullptr) GTEST_SKIP() << "runs only under tests/parallel/failure_injection.sh";
  auto world = world_communicator();
  ASSERT_GE(world->size(), 2);
  world->set_timeout_seconds(3.0);
  world->barrier();
  if (world->rank() == 1) {
    std::string failure = mode;
    if (failure == "kill") raise(SIGKILL);
    // Escapes the test body (run with --gtest_catch_exceptions=0).
    if (failure == "throw") throw std::runtime_error("injected failure on rank 1");
    if (failure == "abort") abort_distributed("injected bad input on rank 1");
    if (failure == "exit") std::exit(3);  // without MPI_Finalize
    if (failure == "hang") sleep(60);
  }
  Tensor x = Tensor::ones({4});
  world->all_reduce(x, ReduceOp::kSum);
  ADD_FAILURE() << "the all-reduce completed although rank 1 failed";
}

}  // namespace
}  // namespace sy
