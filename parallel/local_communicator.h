// The single-rank backend: every collective over a group of one is a copy (or nothing).
#pragma once

#include <deque>
#include <map>

#include "parallel/communicator.h"

namespace sy {

class LocalCommunicator : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string backend() const override { return "local"; }
  std::shared_ptr<Communicator> split(int color, int key) const override;

  Work all_reduce_async(const Tensor& tensor, ReduceOp op) override;
  Work all_gather_async(const Tensor& input, const Tensor& output) override;
  Work reduce_scatter_async(const Tensor& input, const Tensor& output, ReduceOp op) override;
  Work all_to_all_v_async(const Tensor& input, const std::vector<int64_t>& send_rows,
                          const Tensor& output, const std::vector<int64_t>& recv_rows) override;
  Work broadcast_async(const Tensor& tensor, int root) override;
  Work send_async(const Tensor& tensor, int peer, int tag) override;
  Work recv_async(const Tensor& tensor, int peer, int tag) override;
  Work barrier_async() override { return Work(); }

 private:
  std::map<int, std::deque<Tensor>> sent_to_self_;  // by tag, in send order
};

}  // namespace sy
