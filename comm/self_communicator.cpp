#include "comm/self_communicator.h"

#include <cstring>

#include <ATen/ATen.h>

#include "common/error.h"

namespace lrfind::comm {

void SelfCommunicator::allreduce(at::Tensor& tensor, const AllreduceOptions& opts) {
  LRFIND_CHECK(tensor.defined(), "allreduce of an undefined tensor");
  // Nothing to reduce, but an op outside the enum fails here as on MPI and NCCL, so a
  // one-process run does not hide it.
  switch (opts.op) {
    case ReduceOp::kSum:
    case ReduceOp::kMin:
    case ReduceOp::kMax: return;
  }
  throw CommError(concat("the self backend has no reduce op ", static_cast<int>(opts.op)));
}

void SelfCommunicator::broadcast(at::Tensor& tensor, const BroadcastOptions& opts) {
  LRFIND_CHECK(tensor.defined(), "broadcast of an undefined tensor");
  LRFIND_CHECK(opts.root == 0, "broadcast root ", opts.root, " outside a world of 1");
}

void SelfCommunicator::gather(const at::Tensor& input, at::Tensor& output,
                              const GatherOptions& opts) {
  LRFIND_CHECK(opts.root == 0, "gather root ", opts.root, " outside a world of 1");
  LRFIND_CHECK(output.defined() && output.numel() == input.numel(),
               "gather output holds ", output.defined() ? output.numel() : 0,
               " elements, need ", input.numel());
  LRFIND_CHECK(output.scalar_type() == input.scalar_type(), "gather dtype mismatch");
  if (input.is_cpu() && output.is_cpu() && input.is_contiguous() && output.is_contiguous()) {
    // The sweep gathers a few doubles every step: skip the dispatcher.
    std::memcpy(output.data_ptr(), input.data_ptr(), input.nbytes());
  } else {
    output.view({-1}).copy_(input.reshape({-1}));
  }
}

}  // namespace lrfind::comm
