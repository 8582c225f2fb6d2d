// The NCCL backend for CUDA tensors: collectives run on the communicator's own stream,
// ordered after the device's current stream and before whatever it queues after wait().
#pragma once

#include <memory>

#include "parallel/communicator.h"

namespace sy {

// Collective over `bootstrap` (an MPI group): its rank 0 makes the NCCL unique id and
// broadcasts it. One rank per GPU `device`. Builds without CUDA fail with a clear message.
std::shared_ptr<Communicator> make_nccl_communicator(const std::shared_ptr<Communicator>& bootstrap,
                                                     int device);
bool nccl_available();

}  // namespace sy
