// Without CUDA there is no NCCL backend; the CUDA build defines these in
// nccl_communicator_cuda.cc instead.
#include "parallel/nccl_communicator.h"

#include "core/check.h"

#if !defined(SY_WITH_CUDA)
namespace sy {

std::shared_ptr<Communicator> make_nccl_communicator(const std::shared_ptr<Communicator>&, int) {
  SY_FAIL("the NCCL communicator needs a build with CUDA (cmake -DSY_CUDA=ON)");
}

bool nccl_available() { return false; }

}  // namespace sy
#endif
