// Brings up the MPI world once for sy_parallel_tests (one rank when run without mpirun).
#include <gtest/gtest.h>

#include "parallel/communicator.h"

namespace {

class MpiEnvironment : public ::testing::Environment {
 public:
  void SetUp() override { sy::init_distributed(nullptr, nullptr); }
  void TearDown() override { sy::finalize_distributed(); }
};

const ::testing::Environment* const kMpiEnvironment =
    ::testing::AddGlobalTestEnvironment(new MpiEnvironment);

}  // namespace
