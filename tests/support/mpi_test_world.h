// The MPI world for test binaries that link sy_parallel: brought up on first use (MPI_Init
// costs ~0.4 s, which tests that never communicate should not pay under ctest's one process
// per test) and finalized after the last test. Without mpirun it is a one-rank world.
#pragma once

#include <gtest/gtest.h>

#include <memory>

#include "parallel/communicator.h"

namespace sy::testing {

inline std::shared_ptr<Communicator> test_world() {
  if (!distributed_initialized()) init_distributed(nullptr, nullptr);
  return world_communicator();
}

// True when the test runs under mpirun with more than one rank (MultiRank* tests skip otherwise).
inline bool under_mpirun() { return test_world()->size() > 1; }

class MpiTestEnvironment : public ::testing::Environment {
 public:
  void TearDown() override {
    if (distributed_initialized()) finalize_distributed();
  }
};

inline const ::testing::Environment* const kMpiTestEnvironment =
    ::testing::AddGlobalTestEnvironment(new MpiTestEnvironment);

}  // namespace sy::testing
