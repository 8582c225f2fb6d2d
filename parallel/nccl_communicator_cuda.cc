// The NCCL backend: each call makes the communicator's stream wait for the device's current
// stream (the inputs are ready), runs NCCL there, and wait() polls its completion under the
// timeout watchdog, then orders the current stream after it.
#include <nccl.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include "core/cuda/runtime.h"
#include "parallel/nccl_communicator.h"

namespace sy {
namespace {

void check_nccl(ncclResult_t result, const char* what, int rank) {
  if (result == ncclSuccess) return;
  SY_FAIL("NCCL ", what, " failed on rank ", rank, ": ", ncclGetErrorString(result));
}

ncclDataType_t nccl_type(DType dtype) {
  switch (dtype) {
    case DType::kF64: return ncclFloat64;
    case DType::kF32: return ncclFloat32;
    case DType::kBF16: return ncclBfloat16;
    case DType::kF16: return ncclFloat16;
    case DType::kI64: return ncclInt64;
    case DType::kI32: return ncclInt32;
    case DType::kBool: return ncclUint8;
  }
  return ncclUint8;
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return ncclSum;
    case ReduceOp::kAvg: return ncclAvg;
    case ReduceOp::kMax: return ncclMax;
  }
  return ncclSum;
}

class NcclCommunicator;

class NcclPending : public Work::Pending {
 public:
  NcclPending(std::string what, ncclComm_t comm, int device, int rank, int size, double timeout,
              std::vector<Tensor> keep_alive)
      : what_(std::move(what)), comm_(comm), device_(device), rank_(rank), size_(size),
        timeout_seconds_(timeout), keep_alive_(std::move(keep_alive)) {
    SY_CUDA_CHECK(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
  }
  ~NcclPending() override { cudaEventDestroy(done_); }

  cudaEvent_t event() const { return done_; }

  void wait() override {
    cuda::DeviceGuard guard(device_);
    auto start = std::chrono::steady_clock::now();
    for (;;) {
      cudaError_t state = cudaEventQuery(done_);
      if (state == cudaSuccess) break;
      if (state != cudaErrorNotReady) SY_CUDA_CHECK(state);
      ncclResult_t async_error = ncclSuccess;
      ncclCommGetAsyncError(comm_, &async_error);
      double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (async_error != ncclSuccess || waited > timeout_seconds_) {
        std::string reason =
            async_error != ncclSuccess
                ? std::string("NCCL error: ") + ncclGetErrorString(async_error)
                : "did not complete within " + std::to_string(timeout_seconds_) +
                      " s: another rank failed, exited or is stuck";
        std::fprintf(stderr, "switchyard: NCCL %s on a group of %d (group rank %d) failed: %s\n",
                     what_.c_str(), size_, rank_, reason.c_str());
        std::fflush(stderr);
        ncclCommAbort(comm_);
        std::abort();  // the terminate/abort reaches mpirun, which ends the other ranks
      }
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    SY_CUDA_CHECK(cudaStreamWaitEvent(cuda::current_stream(device_), done_, 0));
  }

 private:
  std::string what_;
  ncclComm_t comm_;
  int device_, rank_, size_;
  double timeout_seconds_;
  std::vector<Tensor> keep_alive_;
  cudaEvent_t done_ = nullptr;
};

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(std::shared_ptr<Communicator> bootstrap, int device)
      : bootstrap_(std::move(bootstrap)), device_(device) {
    rank_ = bootstrap_->rank();
    size_ = bootstrap_->size();
    set_timeout_seconds(bootstrap_->timeout_seconds());
    ncclUniqueId id;
    Tensor id_bytes = Tensor::zeros({static_cast<int64_t>(sizeof id)}, DType::kBool);
    if (rank_ == 0) {
      check_nccl(ncclGetUniqueId(&id), "GetUniqueId", rank_);
      std::memcpy(id_bytes.data_ptr(), &id, sizeof id);
    }
    bootstrap_->broadcast(id_bytes, 0);
    std::memcpy(&id, id_bytes.data_ptr(), sizeof id);
    cuda::DeviceGuard guard(device_);
    check_nccl(ncclCommInitRank(&comm_, size_, id, rank_), "CommInitRank", rank_);
    SY_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    SY_CUDA_CHECK(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming));
  }
  ~NcclCommunicator() override {
    cuda::DeviceGuard guard(device_);
    cudaStreamSynchronize(stream_);
    ncclCommDestroy(comm_);
    cudaEventDestroy(ready_);
    cudaStreamDestroy(stream_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "nccl"; }
  std::shared_ptr<Communicator> split(int color, int key) const override {
    return std::make_shared<NcclCommunicator>(bootstrap_->split(color, key), device_);
  }

  Work all_reduce_async(const Tensor& tensor, ReduceOp op) override {
    check("all_reduce", tensor);
    SY_CHECK(op != ReduceOp::kAvg || is_floating(tensor.dtype()), "all_reduce avg needs a floating dtype");
    return launch("all_reduce", {tensor}, [&] {
      check_nccl(ncclAllReduce(tensor.data_ptr(), tensor.data_ptr(), tensor.numel(),
                               nccl_type(tensor.dtype()), nccl_op(op), comm_, stream_),
                 "AllReduce", rank_);
    });
  }
  Work all_gather_async(const Tensor& input, const Tensor& output) override {
    detail::check_all_gather(input, output, size_);
    check("all_gather", input);
    check("all_gather", output);
    return launch("all_gather", {input, output}, [&] {
      check_nccl(ncclAllGather(input.data_ptr(), output.data_ptr(), input.nbytes(), ncclUint8,
                               comm_, stream_),
                 "AllGather", rank_);
    });
  }
  Work reduce_scatter_async(const Tensor& input, const Tensor& output, ReduceOp op) override {
    detail::check_reduce_scatter(input, output, size_);
    check("reduce_scatter", input);
    check("reduce_scatter", output);
    SY_CHECK(op != ReduceOp::kAvg || is_floating(input.dtype()), "reduce_scatter avg needs a floating dtype");
    return launch("reduce_scatter", {input, output}, [&] {
      check_nccl(ncclReduceScatter(input.data_ptr(), output.data_ptr(), output.numel(),
                                   nccl_type(input.dtype()), nccl_op(op), comm_, stream_),
                 "ReduceScatter", rank_);
    });
  }
  Work all_to_all_v_async(const Tensor& input, const std::vector<int64_t>& send_rows,
                          const Tensor& output, const std::vector<int64_t>& recv_rows) override {
    detail::check_all_to_all_v(input, send_rows, output, recv_rows, size_);
    check("all_to_all_v", input);
    check("all_to_all_v", output);
    size_t row = static_cast<size_t>(detail::row_bytes(input));
    return launch("all_to_all_v", {input, output}, [&] {
      auto* send = static_cast<char*>(input.data_ptr());
      auto* receive = static_cast<char*>(output.data_ptr());
      check_nccl(ncclGroupStart(), "GroupStart", rank_);
      for (int p = 0; p < size_; ++p) {
        size_t send_bytes = row * static_cast<size_t>(send_rows[p]);
        size_t recv_bytes = row * static_cast<size_t>(recv_rows[p]);
        if (send_bytes > 0) check_nccl(ncclSend(send, send_bytes, ncclUint8, p, comm_, stream_), "Send", rank_);
        if (recv_bytes > 0) check_nccl(ncclRecv(receive, recv_bytes, ncclUint8, p, comm_, stream_), "Recv", rank_);
        send += send_bytes;
        receive += recv_bytes;
      }
      check_nccl(ncclGroupEnd(), "GroupEnd", rank_);
    });
  }
  Work broadcast_async(const Tensor& tensor, int root) override {
    check("broadcast", tensor);
    SY_CHECK(root >= 0 && root < size_, "broadcast: root ", root, " outside a group of ", size_);
    return launch("broadcast", {tensor}, [&] {
      check_nccl(ncclBroadcast(tensor.data_ptr(), tensor.data_ptr(), tensor.nbytes(), ncclUint8,
                               root, comm_, stream_),
                 "Broadcast", rank_);
    });
  }
  // NCCL matches point-to-point calls by order, not by tag.
  Work send_async(const Tensor& tensor, int peer, int /*tag*/) override {
    check("send", tensor);
    SY_CHECK(peer >= 0 && peer < size_, "send: peer ", peer, " outside a group of ", size_);
    return launch("send", {tensor}, [&] {
      check_nccl(ncclSend(tensor.data_ptr(), tensor.nbytes(), ncclUint8, peer, comm_, stream_),
                 "Send", rank_);
    });
  }
  Work recv_async(const Tensor& tensor, int peer, int /*tag*/) override {
    check("recv", tensor);
    SY_CHECK(peer >= 0 && peer < size_, "recv: peer ", peer, " outside a group of ", size_);
    return launch("recv", {tensor}, [&] {
      check_nccl(ncclRecv(tensor.data_ptr(), tensor.nbytes(), ncclUint8, peer, comm_, stream_),
                 "Recv", rank_);
    });
  }
  Work barrier_async() override {
    Tensor token = Tensor::zeros({1}, DType::kF32, Device::CUDA(device_));
    return all_reduce_async(token, ReduceOp::kSum);
  }

 private:
  void check(const char* what, const Tensor& tensor) const {
    detail::check_contiguous(what, tensor);
    SY_CHECK(tensor.device().is_cuda() && tensor.device().index == device_, what,
             ": the NCCL communicator takes tensors on CUDA:", device_);
  }

  template <typename Call>
  Work launch(const char* what, std::vector<Tensor> tensors, Call call) {
    cuda::DeviceGuard guard(device_);
    SY_CUDA_CHECK(cudaEventRecord(ready_, cuda::current_stream(device_)));
    SY_CUDA_CHECK(cudaStreamWaitEvent(stream_, ready_, 0));
    call();
    auto pending = std::make_unique<NcclPending>(what, comm_, device_, rank_, size_,
                                                 timeout_seconds_, std::move(tensors));
    SY_CUDA_CHECK(cudaEventRecord(pending->event(), stream_));
    return Work(std::move(pending));
  }

  std::shared_ptr<Communicator> bootstrap_;
  int device_;
  int rank_ = 0, size_ = 1;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t ready_ = nullptr;
};

}  // namespace

std::shared_ptr<Communicator> make_nccl_communicator(const std::shared_ptr<Communicator>& bootstrap,
                                                     int device) {
  SY_CHECK(bootstrap != nullptr, "make_nccl_communicator: no bootstrap group");
  return std::make_shared<NcclCommunicator>(bootstrap, device);
}

bool nccl_available() {
  int devices = 0;
  return cudaGetDeviceCount(&devices) == cudaSuccess && devices > 0;
}

}  // namespace sy
