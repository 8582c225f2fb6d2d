// One interface for the collectives of a process group (MPI for CPU tensors, NCCL for CUDA
// tensors, a local one for a single rank). Row counts are along dim 0 of contiguous tensors.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace sy {

enum class ReduceOp { kSum, kAvg, kMax };
const char* reduce_op_name(ReduceOp op);

// A started operation. wait() blocks until it completes (the buffers may then be read or
// reused); a second wait() is a no-op. Dropping a Work that was never waited waits for it,
// since its buffers must stay alive until the backend is done with them.
class Work {
 public:
  class Pending {
   public:
    virtual ~Pending() = default;
    virtual void wait() = 0;
  };

  Work() = default;  // already complete
  explicit Work(std::unique_ptr<Pending> pending) : pending_(std::move(pending)) {}
  Work(Work&&) = default;
  Work& operator=(Work&& other) {
    if (this != &other) {
      wait();
      pending_ = std::move(other.pending_);
    }
    return *this;
  }
  ~Work() { wait(); }

  void wait() {
    if (!pending_) return;
    std::unique_ptr<Pending> pending = std::move(pending_);
    pending->wait();
  }
  bool completed() const { return pending_ == nullptr; }

 private:
  std::unique_ptr<Pending> pending_;
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend() const = 0;  // "mpi", "nccl", "local"

  // Ranks with the same color form a sub-group, ordered by key (ties by rank in this
  // group). Collective over this group: every rank calls it.
  virtual std::shared_ptr<Communicator> split(int color, int key) const = 0;

  // How long a wait() may block before the job is aborted with the rank and the operation
  // in the message (a failed or stuck peer must never hang the job). Sub-groups inherit it.
  void set_timeout_seconds(double seconds) { timeout_seconds_ = seconds; }
  double timeout_seconds() const { return timeout_seconds_; }

  // In place: every rank ends with the reduction of all ranks' `tensor`. kAvg needs a
  // floating dtype.
  virtual Work all_reduce_async(const Tensor& tensor, ReduceOp op) = 0;
  // input (R, ...) on every rank; output (size * R, ...), rank r's rows at r * R.
  virtual Work all_gather_async(const Tensor& input, const Tensor& output) = 0;
  // input (size * R, ...); output (R, ...) = the reduction over ranks of rows [rank * R, +R).
  virtual Work reduce_scatter_async(const Tensor& input, const Tensor& output, ReduceOp op) = 0;
  // Rows [sum(send_rows[:p]), +send_rows[p]) of input go to rank p; rows from rank p land at
  // sum(recv_rows[:p]) of output. send_rows of rank a to b must equal recv_rows of b from a.
  virtual Work all_to_all_v_async(const Tensor& input, const std::vector<int64_t>& send_rows,
                                  const Tensor& output,
                                  const std::vector<int64_t>& recv_rows) = 0;
  // In place: every rank ends with root's tensor.
  virtual Work broadcast_async(const Tensor& tensor, int root) = 0;
  virtual Work send_async(const Tensor& tensor, int peer, int tag = 0) = 0;
  virtual Work recv_async(const Tensor& tensor, int peer, int tag = 0) = 0;
  virtual Work barrier_async() = 0;

  void all_reduce(const Tensor& tensor, ReduceOp op) { all_reduce_async(tensor, op).wait(); }
  void all_gather(const Tensor& input, const Tensor& output) {
    all_gather_async(input, output).wait();
  }
  void reduce_scatter(const Tensor& input, const Tensor& output, ReduceOp op) {
    reduce_scatter_async(input, output, op).wait();
  }
  void all_to_all_v(const Tensor& input, const std::vector<int64_t>& send_rows,
                    const Tensor& output, const std::vector<int64_t>& recv_rows) {
    all_to_all_v_async(input, send_rows, output, recv_rows).wait();
  }
  void broadcast(const Tensor& tensor, int root) { broadcast_async(tensor, root).wait(); }
  void send(const Tensor& tensor, int peer, int tag = 0) { send_async(tensor, peer, tag).wait(); }
  void recv(const Tensor& tensor, int peer, int tag = 0) { recv_async(tensor, peer, tag).wait(); }
  void barrier() { barrier_async().wait(); }

 protected:
  double timeout_seconds_ = 600.0;
};

// Argument checks every backend shares (SY_CHECK with shapes in the message).
namespace detail {
// The size of one row (dim 0) of a contiguous tensor, in bytes.
int64_t row_bytes(const Tensor& tensor);
void check_contiguous(const char* what, const Tensor& tensor);
void check_all_gather(const Tensor& input, const Tensor& output, int size);
void check_reduce_scatter(const Tensor& input, const Tensor& output, int size);
void check_all_to_all_v(const Tensor& input, const std::vector<int64_t>& send_rows,
                        const Tensor& output, const std::vector<int64_t>& recv_rows, int size);
}  // namespace detail

// The process-wide runtime: initializes MPI once (a plain run without mpirun is a one-rank
// world) and installs the failure handling (an uncaught exception on any rank aborts the
// whole job with the rank and the reason). Call once at the top of main; finalize before
// main returns (a rank that exits without it ends a multi-rank job with its rank named).
void init_distributed(int* argc, char*** argv);
void finalize_distributed();
// For a rank that must stop while others may be inside collectives (e.g. main's error path
// in a multi-rank world, where MPI_Finalize could wait on them): prints
// "switchyard: rank R of N failed: <reason>" and ends every rank of the job.
[[noreturn]] void abort_distributed(const std::string& reason);
bool distributed_initialized();
// The world group (MPI); init_distributed must have run.
std::shared_ptr<Communicator> world_communicator();

}  // namespace sy
