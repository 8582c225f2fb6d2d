// The MPI backend for CPU tensors: non-blocking MPI collectives, waited under a watchdog
// that aborts the job (with the rank and the operation) when a peer has failed or hangs.
#pragma once

#include <mpi.h>

#include "parallel/communicator.h"

namespace sy {

class MpiCommunicator : public Communicator {
 public:
  // Takes ownership of `comm` (freed on destruction unless it is MPI_COMM_WORLD).
  explicit MpiCommunicator(MPI_Comm comm);
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "mpi"; }
  std::shared_ptr<Communicator> split(int color, int key) const override;
  MPI_Comm handle() const { return comm_; }

  Work all_reduce_async(const Tensor& tensor, ReduceOp op) override;
  Work all_gather_async(const Tensor& input, const Tensor& output) override;
  Work reduce_scatter_async(const Tensor& input, const Tensor& output, ReduceOp op) override;
  Work all_to_all_v_async(const Tensor& input, const std::vector<int64_t>& send_rows,
                          const Tensor& output, const std::vector<int64_t>& recv_rows) override;
  Work broadcast_async(const Tensor& tensor, int root) override;
  Work send_async(const Tensor& tensor, int peer, int tag) override;
  Work recv_async(const Tensor& tensor, int peer, int tag) override;
  Work barrier_async() override;

 private:
  MPI_Comm comm_;
  int rank_ = 0;
  int size_ = 1;
};

}  // namespace sy
