#pragma once
// Averages the gradients of a fixed list of parameters over all ranks of a
// Communicator, through flat buckets, without copying on the hot path.
//
// All gradients live in one flat buffer: each parameter's .grad() is set to a view of
// its slice (DDP's gradient_as_bucket_view), so backward accumulates straight into the
// buffer. Where the communicator has a SharedBuffer (MPI, every rank on one node) the
// flat buffer is this rank's part of it, and each bucket's allreduce reads and writes
// the other ranks' buffers directly (comm/shm_allreduce.h); elsewhere a bucket is one
// in-place allreduce on a contiguous slice.
//
// The buffer first holds the parameters in reverse order, the order in which backward
// roughly produces their gradients. Buckets are ranges of it: the first holds at most
// `first_bucket_bytes` (small, so that the first allreduce starts early in backward, as
// DDP's 1 MiB first bucket) or `bucket_bytes` if that is smaller, the others at most
// `bucket_bytes`; a parameter may span
// several. If a gradient no longer aliases the buffer (someone replaced it, or
// zero_grad(set_to_none) dropped it), it is copied in (zeros when it is undefined) and
// .grad() points back at the view.
//
// Two ways to run a step:
// - average(), after backward: every bucket, one after another (blocking).
// - Overlapped (`overlap`): a hook after each parameter's gradient accumulation marks it
//   ready, and a bucket's allreduce starts (allreduceAsync) the moment its last gradient
//   is ready, while backward goes on with the earlier layers; the hooks also advance
//   the allreduces under way, since MPI moves messages only inside MPI calls. Buckets
//   start in index order on every rank, so every rank starts its allreduces in the same
//   order. Call beginBackward(last) before each micro-batch's backward (only the last
//   one communicates), launchRemaining() after the last one, or after a failure, and
//   finish() to complete them. launchRemaining() starts every bucket whose gradients did
//   not all arrive, with zeros for the missing ones: a parameter that got no gradient
//   this step (an unused branch) cannot hang the step, and since every rank runs the same
//   model, every rank starts the same buckets.
//   After the first overlapped step, the buffer is laid out again in the order in which
//   the gradients actually arrived on rank 0 (broadcast, so every rank uses the same
//   layout; parameters that got none go last), as DDP rebuilds its buckets: a model whose
//   parameters are registered in another order than it uses them then starts its
//   buckets as early as one registered in order. The new layout takes effect at the
//   next zeroGradients().
//   Overlap needs hooks that can call the communicator: CPU parameters (the hooks run on
//   the thread that calls backward), or a communicator that takes calls from autograd's
//   device threads (Communicator::asyncFromAnyThread: NCCL), and more than one bucket
//   (a single bucket can only start with the last gradient). Elsewhere it is blocking.
// Both ways use the same buckets and the same allreduce: the same bits, with one caveat.
// The rebuilt layout moves bucket boundaries; through shared memory (every element
// summed in rank order) and at np 2 (a + b) that changes nothing, but a ring of 3 or
// more ranks, or a bucket that crosses the 256 KiB line between recursive doubling and
// the ring, sums in an order that follows the layout: there the last bits can differ
// from a blocking run once the layout is rebuilt (rebuild_order = false keeps them).
//
// Only trainable parameters (requires_grad) take part: a frozen one keeps no gradient,
// so the optimizer's weight decay and momentum leave it alone, as in one process.
//
// Contract: every rank constructs it with the same parameter shapes, dtype, device and
// options, and calls the same methods at the same points of each step. All parameters
// share a device and a dtype. With `loss_prescaled`, the caller has already divided its
// loss by the world size, so the sum over ranks is the average and no division pass is
// needed. A world of one does no work at all. average() and finish() return once the
// sums are complete (Communicator::synchronize), so a stalled device collective becomes
// an error. The hooks are removed on destruction; gradients that are views of a shared
// buffer keep its mapping alive.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "comm/communicator.h"

namespace torch::autograd {
struct Node;
}

namespace lrfind::comm {

constexpr std::size_t kDefaultBucketBytes = 25u << 20;     // DDP's default, 25 MiB.
constexpr std::size_t kDefaultFirstBucketBytes = 1u << 20;  // DDP's first bucket, 1 MiB.

// Where one step's averaging time went, for benchmarks (AveragingOptions::timeline).
// Seconds on the steady clock.
struct AveragingTimeline {
  double backward_begin = 0;  // beginBackward(last)
  double backward_end = 0;    // launchRemaining()
  double finish_begin = 0;    // finish() or average()
  double finish_end = 0;
  std::vector<double> bucket_start, bucket_done;  // per bucket: started, seen complete
};

struct AveragingOptions {
  std::size_t bucket_bytes = kDefaultBucketBytes;
  std::size_t first_bucket_bytes = kDefaultFirstBucketBytes;
  bool loss_prescaled = false;
  bool overlap = false;
  // Use the communicator's SharedBuffer where it has one.
  bool shared_memory = true;
  // Overlapped: lay the buffer out again in the order observed in the first step.
  bool rebuild_order = true;
  // Benchmarks: one entry per step is appended here.
  std::vector<AveragingTimeline>* timeline = nullptr;
};

class GradientAverager {
 public:
  GradientAverager(Communicator& comm, std::vector<at::Tensor> params, const AveragingOptions& options);
  // Blocking, every bucket `bucket_bytes` (the first one too), no shared memory.
  explicit GradientAverager(Communicator& comm, std::vector<at::Tensor> params,
                            std::size_t bucket_bytes = kDefaultBucketBytes, bool loss_prescaled = false);
  ~GradientAverager();
  GradientAverager(const GradientAverager&) = delete;
  GradientAverager& operator=(const GradientAverager&) = delete;

  // Zeros every gradient in place (one pass over the buffer), like LibTorch 1.x's
  // zero_grad() but without its detach_(), which refuses the views; applies a new layout
  // decided at the last finish().
  void zeroGradients();

  // Blocking: after backward, every bucket. Not on an overlapping averager.
  void average();

  // Overlapped (no-ops otherwise): see the comment at the top.
  void beginBackward(bool last);
  void launchRemaining();
  void finish();

  // Whether this averager overlaps (asked for, several ranks and buckets, hooks that
  // may call).
  bool overlapping() const { return overlap_; }
  // How the buckets travel: "shared memory", or the communicator's name; and, when
  // shared memory was asked for and not used, why.
  const std::string& transport() const { return transport_; }
  const std::string& sharedMemoryUnavailable() const { return no_shared_memory_; }
  // Overlapped: how many buckets the last finished step started while backward still
  // had gradients to produce (the rest started with the last gradient, or after).
  std::size_t bucketsStartedInBackward() const { return started_in_backward_; }
  std::size_t numBuckets() const { return buckets_.size(); }
  // The parameters' indices in buffer order (the first is the first bucket's).
  const std::vector<std::size_t>& layoutOrder() const { return order_; }
  // Overlapped: whether the first step's order replaced the initial layout.
  bool layoutRebuilt() const { return rebuilt_; }

 private:
  struct Bucket {
    int64_t offset, numel;
    at::Tensor slice;  // of flat_
  };
  void layOut(const std::vector<std::size_t>& order);
  void onGradientReady(std::size_t i);
  void adopt(std::size_t i);  // points params_[i].grad() at its view, copying it in
  std::unique_ptr<Work> start(std::size_t b);
  std::size_t launchReadyInOrder();  // how many it started
  void resetStep();
  void decideLayout();
  void markDone(std::size_t b);  // timeline: bucket b seen complete
  void completeStep();           // after the last bucket: division, synchronize, timeline

  Communicator& comm_;
  std::vector<at::Tensor> params_;
  AveragingOptions options_;
  bool overlap_ = false;
  std::unique_ptr<SharedBuffer> shared_;  // declared before works_: Works go first
  std::string transport_;
  std::string no_shared_memory_;
  at::Tensor flat_;
  std::vector<std::size_t> order_;   // parameter indices in buffer order
  std::vector<at::Tensor> views_;    // views_[i]: params_[i]'s slice of flat_, shaped like it
  std::vector<Bucket> buckets_;
  // Overlap: which buckets each parameter touches, how many parameters each bucket
  // still waits for this step, and the allreduces started this step.
  std::vector<std::vector<std::size_t>> param_buckets_;
  std::vector<int> params_per_bucket_;
  std::vector<int> waiting_;
  std::vector<char> ready_;
  std::vector<std::unique_ptr<Work>> works_;
  std::size_t next_launch_ = 0;
  std::size_t first_incomplete_ = 0;  // buckets before it are complete
  std::size_t arrived_ = 0;        // gradients in this step
  std::size_t started_early_ = 0;  // buckets started before the last gradient
  std::size_t started_in_backward_ = 0;
  bool armed_ = false;
  // The first overlapped step's arrival order, and the layout decided from it.
  std::vector<std::size_t> observed_;
  bool observing_ = true;
  std::vector<std::size_t> next_order_;
  bool rebuilt_ = false;
  AveragingTimeline step_timeline_;
  // The gradient accumulators carrying the hooks, kept alive (autograd holds them only
  // weakly), and the hooks' keys for removal.
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;
  std::vector<std::uintptr_t> hook_keys_;
};

}  // namespace lrfind::comm
