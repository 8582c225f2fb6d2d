// The MPI backend and the process-wide runtime (MPI_Init_thread / MPI_Finalize, failure
// handling). Reductions of bf16/f16 run in f32 (MPI has no 16-bit float types); data that is
// only moved travels as bytes.
#include "parallel/mpi_communicator.h"

#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <thread>

#include "core/check.h"

namespace sy {
namespace {

std::shared_ptr<Communicator>& world_slot() {
  static std::shared_ptr<Communicator> world;
  return world;
}

int world_rank() {
  int initialized = 0, finalized = 0, rank = -1;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

// Prints the reason with the rank and brings every rank of the job down.
[[noreturn]] void abort_job(const std::string& reason) {
  int size = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  std::fprintf(stderr, "switchyard: rank %d of %d failed: %s\n", world_rank(), size,
               reason.c_str());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 1);
  std::abort();
}

void check_mpi(int code, const char* what, int rank) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  SY_FAIL("MPI ", what, " failed on rank ", rank, ": ", std::string(text, length));
}

int to_int(int64_t value, const char* what) {
  SY_CHECK(value >= 0 && value <= INT_MAX, what, ": ", value,
           " exceeds what one MPI call can move (INT_MAX)");
  return static_cast<int>(value);
}

// MPI's type for a dtype that MPI reduces natively; bf16/f16 have none.
bool native_mpi_type(DType dtype, MPI_Datatype* type) {
  switch (dtype) {
    case DType::kF64: *type = MPI_DOUBLE; return true;
    case DType::kF32: *type = MPI_FLOAT; return true;
    case DType::kI64: *type = MPI_INT64_T; return true;
    case DType::kI32: *type = MPI_INT32_T; return true;
    case DType::kBool: *type = MPI_UINT8_T; return true;
    default: return false;
  }
}

MPI_Op mpi_op(ReduceOp op) { return op == ReduceOp::kMax ? MPI_MAX : MPI_SUM; }

// MPI requests plus what must outlive them, waited under the timeout watchdog.
class MpiPending : public Work::Pending {
 public:
  MpiPending(std::string what, int rank, int size, double timeout_seconds)
      : what_(std::move(what)), rank_(rank), size_(size), timeout_seconds_(timeout_seconds) {}
  ~MpiPending() override {
    if (row_type_ != MPI_DATATYPE_NULL) {
      int finalized = 0;
      MPI_Finalized(&finalized);
      if (!finalized) MPI_Type_free(&row_type_);
    }
  }

  void wait() override {
    // Spin briefly (most collectives here are short), then back off to 1 ms naps.
    auto start = std::chrono::steady_clock::now();
    int done = 0;
    for (int polls = 0;; ++polls) {
      check_mpi(MPI_Testall(static_cast<int>(requests.size()), requests.data(), &done,
                            MPI_STATUSES_IGNORE),
                what_.c_str(), rank_);
      if (done) break;
      double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (waited > timeout_seconds_) {
        abort_job(absl::StrCat(what_, " on a group of ", size_, " (group rank ", rank_,
                               ") did not complete within ", timeout_seconds_,
                               " s: another rank failed, exited or is stuck"));
      }
      if (polls > 1000) std::this_thread::sleep_for(std::chrono::microseconds(polls > 5000 ? 1000 : 50));
    }
    if (finish) finish();
  }

  std::vector<MPI_Request> requests;
  std::vector<Tensor> keep_alive;
  std::vector<int> counts, displacements, recv_counts, recv_displacements;
  MPI_Datatype row_type_ = MPI_DATATYPE_NULL;
  std::function<void()> finish;  // after completion: copy back from a staging buffer, scale

 private:
  std::string what_;
  int rank_, size_;
  double timeout_seconds_;
};

void check_cpu(const char* what, const Tensor& tensor) {
  SY_CHECK(tensor.device().is_cpu(), what, ": the MPI communicator takes CPU tensors");
}

void check_avg(const char* what, ReduceOp op, DType dtype) {
  SY_CHECK(op != ReduceOp::kAvg || is_floating(dtype), what, " avg needs a floating dtype, got ",
           dtype_name(dtype));
}

void terminate_handler() {
  std::string reason = "terminate called without an active exception";
  if (std::exception_ptr error = std::current_exception()) {
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      reason = absl::StrCat("uncaught exception: ", e.what());
    } catch (...) {
      reason = "uncaught exception of unknown type";
    }
  }
  abort_job(reason);
}

// A rank leaving without finalize_distributed() (std::exit on an error path) would leave
// its peers waiting in collectives: in a multi-rank world that ends the job, with the rank.
void exit_handler() {
  int initialized = 0, finalized = 0, size = 1;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized) return;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size > 1) abort_job("exited without finalize_distributed() while other ranks may still run");
  world_slot().reset();
  MPI_Finalize();
}

}  // namespace

MpiCommunicator::MpiCommunicator(MPI_Comm comm) : comm_(comm) {
  MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
}

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && comm_ != MPI_COMM_WORLD && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

std::shared_ptr<Communicator> MpiCommunicator::split(int color, int key) const {
  SY_CHECK(color >= 0, "split: color must be >= 0, got ", color);
  MPI_Comm group;
  check_mpi(MPI_Comm_split(comm_, color, key, &group), "Comm_split", rank_);
  auto result = std::make_shared<MpiCommunicator>(group);
  result->set_timeout_seconds(timeout_seconds());
  return result;
}

Work MpiCommunicator::all_reduce_async(const Tensor& tensor, ReduceOp op) {
  detail::check_contiguous("all_reduce", tensor);
  check_cpu("all_reduce", tensor);
  check_avg("all_reduce", op, tensor.dtype());
  auto pending = std::make_unique<MpiPending>(absl::StrCat("all_reduce(", reduce_op_name(op), ")"),
                                              rank_, size_, timeout_seconds_);
  MPI_Datatype type;
  Tensor buffer = tensor;
  if (!native_mpi_type(tensor.dtype(), &type)) {
    buffer = tensor.to(DType::kF32).contiguous();
    type = MPI_FLOAT;
  }
  pending->keep_alive = {tensor, buffer};
  pending->requests.resize(1);
  check_mpi(MPI_Iallreduce(MPI_IN_PLACE, buffer.data_ptr(), to_int(buffer.numel(), "all_reduce"),
                           type, mpi_op(op), comm_, pending->requests.data()),
            "Iallreduce", rank_);
  int size = size_;
  pending->finish = [target = Tensor(tensor), buffer, op, size]() mutable {
    if (op == ReduceOp::kAvg) buffer.mul_(1.0 / size);
    if (!buffer.same(target)) target.copy_(buffer);
  };
  return Work(std::move(pending));
}

Work MpiCommunicator::all_gather_async(const Tensor& input, const Tensor& output) {
  detail::check_all_gather(input, output, size_);
  check_cpu("all_gather", input);
  check_cpu("all_gather", output);
  auto pending = std::make_unique<MpiPending>("all_gather", rank_, size_, timeout_seconds_);
  pending->keep_alive = {input, output};
  pending->requests.resize(1);
  int bytes = to_int(static_cast<int64_t>(input.nbytes()), "all_gather");
  check_mpi(MPI_Iallgather(input.data_ptr(), bytes, MPI_BYTE, output.data_ptr(), bytes, MPI_BYTE,
                           comm_, pending->requests.data()),
            "Iallgather", rank_);
  return Work(std::move(pending));
}

Work MpiCommunicator::reduce_scatter_async(const Tensor& input, const Tensor& output,
                                           ReduceOp op) {
  detail::check_reduce_scatter(input, output, size_);
  check_cpu("reduce_scatter", input);
  check_cpu("reduce_scatter", output);
  check_avg("reduce_scatter", op, input.dtype());
  auto pending = std::make_unique<MpiPending>(
      absl::StrCat("reduce_scatter(", reduce_op_name(op), ")"), rank_, size_, timeout_seconds_);
  MPI_Datatype type;
  Tensor send = input, receive = output;
  if (!native_mpi_type(input.dtype(), &type)) {
    send = input.to(DType::kF32).contiguous();
    receive = Tensor::empty(output.shape(), DType::kF32);
    type = MPI_FLOAT;
  }
  pending->keep_alive = {input, output, send, receive};
  pending->requests.resize(1);
  check_mpi(MPI_Ireduce_scatter_block(send.data_ptr(), receive.data_ptr(),
                                      to_int(receive.numel(), "reduce_scatter"), type, mpi_op(op),
                                      comm_, pending->requests.data()),
            "Ireduce_scatter_block", rank_);
  int size = size_;
  pending->finish = [target = Tensor(output), receive, op, size]() mutable {
    if (op == ReduceOp::kAvg) receive.mul_(1.0 / size);
    if (!receive.same(target)) target.copy_(receive);
  };
  return Work(std::move(pending));
}

Work MpiCommunicator::all_to_all_v_async(const Tensor& input, const std::vector<int64_t>& send_rows,
                                         const Tensor& output,
                                         const std::vector<int64_t>& recv_rows) {
  detail::check_all_to_all_v(input, send_rows, output, recv_rows, size_);
  check_cpu("all_to_all_v", input);
  check_cpu("all_to_all_v", output);
  auto pending = std::make_unique<MpiPending>("all_to_all_v", rank_, size_, timeout_seconds_);
  pending->keep_alive = {input, output};
  // Counts travel in rows of one derived type, so a row count (not a byte count) must fit
  // in an int.
  int64_t bytes_per_row = detail::row_bytes(input);
  check_mpi(MPI_Type_contiguous(to_int(std::max<int64_t>(bytes_per_row, 1), "all_to_all_v row"),
                                MPI_BYTE, &pending->row_type_),
            "Type_contiguous", rank_);
  check_mpi(MPI_Type_commit(&pending->row_type_), "Type_commit", rank_);
  int64_t send_offset = 0, recv_offset = 0;
  for (int p = 0; p < size_; ++p) {
    pending->counts.push_back(to_int(bytes_per_row == 0 ? 0 : send_rows[p], "all_to_all_v"));
    pending->displacements.push_back(to_int(send_offset, "all_to_all_v"));
    pending->recv_counts.push_back(to_int(bytes_per_row == 0 ? 0 : recv_rows[p], "all_to_all_v"));
    pending->recv_displacements.push_back(to_int(recv_offset, "all_to_all_v"));
    send_offset += send_rows[p];
    recv_offset += recv_rows[p];
  }
  pending->requests.resize(1);
  check_mpi(MPI_Ialltoallv(input.data_ptr(), pending->counts.data(), pending->displacements.data(),
                           pending->row_type_, output.data_ptr(), pending->recv_counts.data(),
                           pending->recv_displacements.data(), pending->row_type_, comm_,
                           pending->requests.data()),
            "Ialltoallv", rank_);
  return Work(std::move(pending));
}

Work MpiCommunicator::broadcast_async(const Tensor& tensor, int root) {
  detail::check_contiguous("broadcast", tensor);
  check_cpu("broadcast", tensor);
  SY_CHECK(root >= 0 && root < size_, "broadcast: root ", root, " outside a group of ", size_);
  auto pending = std::make_unique<MpiPending>("broadcast", rank_, size_, timeout_seconds_);
  pending->keep_alive = {tensor};
  pending->requests.resize(1);
  check_mpi(MPI_Ibcast(tensor.data_ptr(), to_int(static_cast<int64_t>(tensor.nbytes()), "broadcast"),
                       MPI_BYTE, root, comm_, pending->requests.data()),
            "Ibcast", rank_);
  return Work(std::move(pending));
}

Work MpiCommunicator::send_async(const Tensor& tensor, int peer, int tag) {
  detail::check_contiguous("send", tensor);
  check_cpu("send", tensor);
  SY_CHECK(peer >= 0 && peer < size_, "send: peer ", peer, " outside a group of ", size_);
  auto pending = std::make_unique<MpiPending>(absl::StrCat("send to ", peer), rank_, size_,
                                              timeout_seconds_);
  pending->keep_alive = {tensor};
  pending->requests.resize(1);
  check_mpi(MPI_Isend(tensor.data_ptr(), to_int(static_cast<int64_t>(tensor.nbytes()), "send"),
                      MPI_BYTE, peer, tag, comm_, pending->requests.data()),
            "Isend", rank_);
  return Work(std::move(pending));
}

Work MpiCommunicator::recv_async(const Tensor& tensor, int peer, int tag) {
  detail::check_contiguous("recv", tensor);
  check_cpu("recv", tensor);
  SY_CHECK(peer >= 0 && peer < size_, "recv: peer ", peer, " outside a group of ", size_);
  auto pending = std::make_unique<MpiPending>(absl::StrCat("recv from ", peer), rank_, size_,
                                              timeout_seconds_);
  pending->keep_alive = {tensor};
  pending->requests.resize(1);
  check_mpi(MPI_Irecv(tensor.data_ptr(), to_int(static_cast<int64_t>(tensor.nbytes()), "recv"),
                      MPI_BYTE, peer, tag, comm_, pending->requests.data()),
            "Irecv", rank_);
  return Work(std::move(pending));
}

Work MpiCommunicator::barrier_async() {
  auto pending = std::make_unique<MpiPending>("barrier", rank_, size_, timeout_seconds_);
  pending->requests.resize(1);
  check_mpi(MPI_Ibarrier(comm_, pending->requests.data()), "Ibarrier", rank_);
  return Work(std::move(pending));
}

void init_distributed(int* argc, char*** argv) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    // Gradient-bucket hooks may start collectives from the backward pass's thread.
    MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided);
  }
  std::set_terminate(terminate_handler);
  if (!world_slot()) {
    std::atexit(exit_handler);
    MPI_Comm world;
    MPI_Comm_dup(MPI_COMM_WORLD, &world);
    world_slot() = std::make_shared<MpiCommunicator>(world);
  }
}

void finalize_distributed() {
  world_slot().reset();
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Finalize();
}

void abort_distributed(const std::string& reason) { abort_job(reason); }

bool distributed_initialized() { return world_slot() != nullptr; }

std::shared_ptr<Communicator> world_communicator() {
  SY_CHECK(world_slot() != nullptr, "world_communicator() before init_distributed()");
  return world_slot();
}

}  // namespace sy
