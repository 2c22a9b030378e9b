#pragma once
// Averages the gradients of a fixed list of parameters over all ranks of a
// Communicator, through flat buckets, without copying on the hot path.
//
// All gradients live in one flat buffer: each parameter's .grad() is set to a view of
// its slice (DDP's gradient_as_bucket_view), so backward accumulates straight into the
// buffer. The buffer holds the parameters in reverse order, the order in which backward
// roughly produces their gradients; buckets are ranges of at most `bucket_bytes` of it,
// and a parameter may span several. Each bucket is one in-place allreduce on a
// contiguous slice. If a gradient no longer aliases the buffer (someone replaced it, or
// zero_grad(set_to_none) dropped it), it is copied in (zeros when it is undefined) and
// .grad() points back at the view.
//
// Two ways to run a step:
// - average(), after backward: every bucket, one after another (blocking).
// - Overlapped (`overlap`, CPU parameters): a hook after each parameter's gradient
//   accumulation marks it ready, and a bucket's allreduce starts (allreduceAsync) the
//   moment its last gradient is ready, while backward goes on with the earlier layers;
//   the hooks also advance the allreduces under way, since MPI moves messages only
//   inside MPI calls. Buckets start in index order on every rank, so every rank starts
//   its allreduces in the same order. Call beginBackward(last) before each micro-batch's
//   backward (only the last one communicates), launchRemaining() after the last one, or
//   after a failure, and finish() to complete them. launchRemaining() starts every bucket
//   whose gradients did not all arrive, with zeros for the missing ones: a parameter
//   that got no gradient this step (an unused branch) cannot hang the step, and since
//   every rank runs the same model, every rank starts the same buckets.
// Both ways use the same buckets and the same allreduce: the same bits.
//
// Only trainable parameters (requires_grad) take part: a frozen one keeps no gradient,
// so the optimizer's weight decay and momentum leave it alone, as in one process.
//
// Contract: every rank constructs it with the same parameter shapes, dtype, device,
// bucket size and overlap, and calls the same methods at the same points of each step.
// All parameters share a device and a dtype. With `loss_prescaled`, the caller has
// already divided its loss by the world size, so the sum over ranks is the average and
// no division pass is needed. A world of one does no work at all. average() and
// finish() return once the sums are complete (Communicator::synchronize), so a stalled
// device collective becomes an error. The hooks are removed on destruction.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include <ATen/core/Tensor.h>

#include "comm/communicator.h"

namespace torch::autograd {
struct Node;
}

namespace lrfind::comm {

constexpr std::size_t kDefaultBucketBytes = 25u << 20;  // DDP's default, 25 MiB.

class GradientAverager {
 public:
  GradientAverager(Communicator& comm, std::vector<at::Tensor> params,
                   std::size_t bucket_bytes = kDefaultBucketBytes, bool loss_prescaled = false,
                   bool overlap = false);
  ~GradientAverager();
  GradientAverager(const GradientAverager&) = delete;
  GradientAverager& operator=(const GradientAverager&) = delete;

  // Blocking: after backward, every bucket.
  void average();

  // Overlapped (no-ops otherwise): see the comment at the top.
  void beginBackward(bool last);
  void launchRemaining();
  void finish();

  // Whether this averager overlaps (asked for, several ranks, CPU parameters).
  bool overlapping() const { return overlap_; }
  // Overlapped: how many buckets the hooks started during the last finished step's
  // backward (the rest started in launchRemaining()).
  std::size_t bucketsStartedInBackward() const { return started_in_backward_; }
  std::size_t numBuckets() const { return buckets_.size(); }

 private:
  void onGradientReady(std::size_t i);
  void adopt(std::size_t i);  // points params_[i].grad() at its view, copying it in
  void launchReadyInOrder();
  void resetStep();

  Communicator& comm_;
  std::vector<at::Tensor> params_;
  bool loss_prescaled_;
  bool overlap_ = false;
  at::Tensor flat_;
  std::vector<at::Tensor> views_;    // views_[i]: params_[i]'s slice of flat_, shaped like it
  std::vector<at::Tensor> buckets_;  // contiguous slices of flat_
  // Overlap: which buckets each parameter touches, how many parameters each bucket
  // still waits for this step, and the allreduces started this step.
  std::vector<std::vector<std::size_t>> param_buckets_;
  std::vector<int> params_per_bucket_;
  std::vector<int> waiting_;
  std::vector<char> ready_;
  std::vector<std::unique_ptr<Work>> works_;
  std::size_t next_launch_ = 0;
  std::size_t started_in_backward_ = 0;
  bool armed_ = false;
  // The gradient accumulators carrying the hooks, kept alive (autograd holds them only
  // weakly), and the hooks' keys for removal.
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;
  std::vector<std::uintptr_t> hook_keys_;
};

}  // namespace lrfind::comm
