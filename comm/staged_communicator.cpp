#include "comm/staged_communicator.h"

#include <ATen/ATen.h>

namespace lrfind::comm {
namespace {

// Runs `op` on a host copy of `tensor` and copies the result back into it.
template <typename Op>
void staged(at::Tensor& tensor, Op&& op) {
  if (tensor.is_cpu()) {
    op(tensor);
    return;
  }
  at::Tensor host = tensor.to(at::kCPU);  // waits for the work that produced `tensor`
  op(host);
  tensor.copy_(host);
}

}  // namespace

void StagedCommunicator::allreduce(at::Tensor& tensor, const AllreduceOptions& opts) {
  staged(tensor, [&](at::Tensor& t) { host_.allreduce(t, opts); });
}

void StagedCommunicator::broadcast(at::Tensor& tensor, const BroadcastOptions& opts) {
  staged(tensor, [&](at::Tensor& t) { host_.broadcast(t, opts); });
}

void StagedCommunicator::gather(const at::Tensor& input, at::Tensor& output, const GatherOptions& opts) {
  const at::Tensor host_input = input.to(at::kCPU);
  if (!output.defined()) {
    at::Tensor none;
    host_.gather(host_input, none, opts);
    return;
  }
  staged(output, [&](at::Tensor& t) { host_.gather(host_input, t, opts); });
}

}  // namespace lrfind::comm
