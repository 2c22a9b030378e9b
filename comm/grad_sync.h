#pragma once
// Averages the gradients of a fixed list of parameters over all ranks of a
// Communicator, through flat buckets, without copying on the hot path.
//
// All gradients live in one flat buffer: each parameter's .grad() is set to a view of
// its slice (DDP's gradient_as_bucket_view), so backward accumulates straight into the
// buffer. Buckets are ranges of at most `bucket_bytes` of that buffer, cut in
// parameter order; a parameter may span several. Each bucket is one in-place allreduce
// on a contiguous slice. If a gradient no longer aliases the buffer (someone replaced
// it, or zero_grad(set_to_none) dropped it), average() copies it in (zeros when it is
// undefined) and points .grad() back at the view.
//
// Only trainable parameters (requires_grad) take part: a frozen one keeps no gradient,
// so the optimizer's weight decay and momentum leave it alone, as in one process.
//
// Contract: every rank constructs it with the same parameter shapes, dtype, device and
// bucket size, and calls average() at the same point of each step. All parameters share
// a device and a dtype. With `loss_prescaled`, the caller has already divided its loss
// by the world size, so the sum over ranks is the average and no division pass is
// needed. A world of one does no work at all. average() returns once the sums are
// complete (Communicator::synchronize), so a stalled device collective becomes an error.

#include <cstddef>
#include <vector>

#include <ATen/core/Tensor.h>

#include "comm/communicator.h"

namespace lrfind::comm {

constexpr std::size_t kDefaultBucketBytes = 25u << 20;  // DDP's default, 25 MiB.

class GradientAverager {
 public:
  GradientAverager(Communicator& comm, std::vector<at::Tensor> params,
                   std::size_t bucket_bytes = kDefaultBucketBytes, bool loss_prescaled = false);

  void average();

  std::size_t numBuckets() const { return buckets_.size(); }

 private:
  Communicator& comm_;
  std::vector<at::Tensor> params_;
  bool loss_prescaled_;
  at::Tensor flat_;
  std::vector<at::Tensor> views_;    // views_[i]: params_[i]'s slice of flat_, shaped like it
  std::vector<at::Tensor> buckets_;  // contiguous slices of flat_
};

}  // namespace lrfind::comm
