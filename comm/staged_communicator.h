#pragma once
// A Communicator for device tensors that goes through host memory: each call copies the
// tensor to the host, runs the host communicator's collective (MPI) and copies the result
// back. Slower than NCCL by two copies per call, but it needs no device-to-device
// transport, so it works where NCCL cannot: several ranks sharing one GPU
// (--allow-gpu-sharing), or a build without NCCL. Host tensors pass straight through.

#include "comm/communicator.h"

namespace lrfind::comm {

class StagedCommunicator final : public Communicator {
 public:
  explicit StagedCommunicator(Communicator& host) : host_(host) {}

  int rank() const override { return host_.rank(); }
  int size() const override { return host_.size(); }
  std::string name() const override { return host_.name() + "+host-staging"; }

  void allreduce(at::Tensor& tensor, const AllreduceOptions& opts = {}) override;
  void broadcast(at::Tensor& tensor, const BroadcastOptions& opts = {}) override;
  void gather(const at::Tensor& input, at::Tensor& output, const GatherOptions& opts = {}) override;
  void barrier() override { host_.barrier(); }

 private:
  Communicator& host_;
};

}  // namespace lrfind::comm
