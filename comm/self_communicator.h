#pragma once
// The world of one process: every collective is local and cheap. Used when lrfind runs
// without a launcher, and by the library when no communicator is given.

#include "comm/communicator.h"

namespace lrfind::comm {

class SelfCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string name() const override { return "self"; }

  void allreduce(at::Tensor& tensor, const AllreduceOptions& opts = {}) override;
  void broadcast(at::Tensor& tensor, const BroadcastOptions& opts = {}) override;
  void gather(const at::Tensor& input, at::Tensor& output,
              const GatherOptions& opts = {}) override;
  void barrier() override {}
};

}  // namespace lrfind::comm
