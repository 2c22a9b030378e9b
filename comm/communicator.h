#pragma once
// The only way the sweep talks to other ranks.
//
// Contract, for every backend:
// - Collectives must be called by every rank of the world, in the same order, with
//   tensors of the same dtype and shape (the size of a gather's output excepted, see
//   below). A rank that failed locally still makes the call and
//   reports its failure in the data it sends; no rank leaves the sequence alone.
// - Ordering: host backends (self, MPI) finish a call before it returns. Device
//   backends (NCCL) enqueue it on the device's current stream, so later work on that
//   stream sees the result, and synchronize() waits, bounded, for everything issued.
// - Tensors are contiguous. Which devices a backend accepts is its own contract
//   (self: any; MPI: CPU; NCCL: CUDA).
// - One thread per communicator at a time; a communicator is not thread-safe.
// - The caller owns all tensors; a call never keeps a reference after it returns.
// - Bounded: a backend that talks to other processes finishes every call with
//   boundedWait (comm/wait.h) under waitPolicy(), so a rank that never arrives becomes a
//   CommTimeout naming it, never a hang. After a CommTimeout the communicator is
//   unusable.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "comm/wait.h"

namespace at {
class Tensor;
}
namespace c10 {
enum class ScalarType : int8_t;
}

namespace lrfind::comm {

enum class ReduceOp { kSum, kMin, kMax };

struct AllreduceOptions {
  ReduceOp op = ReduceOp::kSum;
};

struct BroadcastOptions {
  int root = 0;
};

struct GatherOptions {
  int root = 0;
};

// An allreduce under way (Communicator::allreduceAsync). Its tensor must stay untouched
// until it completes, and the Work must not outlive its communicator. Driven from the
// communicator's thread, like every call. Destroyed unfinished (after an error), it
// gives up the operation; the communicator is then as after a CommTimeout.
class Work {
 public:
  virtual ~Work() = default;
  // Advances the operation as far as it can without blocking; true once it is complete
  // (the tensor holds the result; for device backends: enqueued, as allreduce()).
  virtual bool test() = 0;
  // Completes it within the communicator's wait policy: CommTimeout past the deadline,
  // naming the ranks it waits for.
  virtual void wait() = 0;
};

// Memory that every rank of a communicator maps (ranks on one node), with allreduces over
// ranges of it that read the other ranks' memory directly instead of sending messages
// (Communicator::sharedBuffer). Driven from the communicator's thread, like every call.
// The caller's part: ranges under way do not overlap; a range is not written from the
// moment it is started until it is complete on this rank *and* the caller knows every
// rank completed it (the next allreduce of it, or any later collective, tells); every
// Work is destroyed before its buffer.
class SharedBuffer {
 public:
  virtual ~SharedBuffer() = default;
  // This rank's part: a contiguous CPU tensor of the size asked for, filled with zeros at
  // first. The mapping lives as long as this tensor or any view of it does.
  virtual at::Tensor local() const = 0;
  // In place on every rank: local()[offset, offset + numel) becomes the sum over ranks.
  // Every rank starts the same ranges in the same order, as with allreduceAsync; every
  // rank ends with the same bits.
  virtual std::unique_ptr<Work> allreduceAsync(int64_t offset, int64_t numel) = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Backend name for logs and results ("self", "mpi", ...).
  virtual std::string name() const = 0;

  // In place: afterwards every rank holds the reduction of all ranks' `tensor`.
  virtual void allreduce(at::Tensor& tensor, const AllreduceOptions& opts = {}) = 0;
  // allreduce() started now and completed by the returned Work, so that the caller can
  // compute while it runs (gradient buckets during backward). Every rank starts its
  // asynchronous allreduces in the same order; they may complete in any order, and
  // test() may be called on them in any order. The same algorithm as allreduce(): the
  // same bits. Backends without it finish the allreduce here and return a completed Work.
  virtual std::unique_ptr<Work> allreduceAsync(at::Tensor& tensor, const AllreduceOptions& opts = {});
  // Whether allreduceAsync() and Work::test() may also be called from autograd's device
  // threads (gradient hooks on CUDA tensors run there) while this communicator's thread
  // waits in backward(): never concurrently, but from another thread.
  virtual bool asyncFromAnyThread() const { return false; }
  // In place: afterwards every rank holds root's `tensor`.
  virtual void broadcast(at::Tensor& tensor, const BroadcastOptions& opts = {}) = 0;
  // Root receives every rank's `input` (same numel on all ranks) into `output`, rank r
  // at elements [r*n, (r+1)*n) of its flattened view; `output` must then hold
  // size()*n elements of input's dtype. Non-root ranks may pass an undefined `output`.
  virtual void gather(const at::Tensor& input, at::Tensor& output,
                      const GatherOptions& opts = {}) = 0;
  virtual void barrier() = 0;
  // Collective: a SharedBuffer of `numel` elements of `dtype` per rank where the backend
  // has one (MPI, every rank on one node), else nullptr, with the reason in *why.
  // Every rank gets the same answer.
  virtual std::unique_ptr<SharedBuffer> sharedBuffer(int64_t numel, c10::ScalarType dtype, std::string* why);
  // Returns once every collective issued so far has completed (a no-op on host
  // backends). Throws CommError rather than wait past the backend's timeout.
  virtual void synchronize() {}

  // What the caller is doing now ("step 412"): the prefix of stall warnings and timeout
  // messages. Local, no communication.
  void setLabel(std::string label) { label_ = std::move(label); }
  const std::string& label() const { return label_; }
  // One "host, pid N" entry per rank (an exchange the caller did), so that messages name
  // where a rank runs. Local.
  void setPeerNames(std::vector<std::string> names) { peer_names_ = std::move(names); }
  const std::vector<std::string>& peerNames() const { return peer_names_; }
  // The deadline and stall warning of every wait. Local; set it before the collectives
  // it should govern.
  void setWaitPolicy(WaitPolicy policy) { wait_policy_ = std::move(policy); }
  const WaitPolicy& waitPolicy() const { return wait_policy_; }

 protected:
  // "rank R (host, pid N)" for messages.
  std::string describeRank(int rank) const { return describeRanks({rank}, peer_names_); }

 private:
  std::string label_;
  std::vector<std::string> peer_names_;
  WaitPolicy wait_policy_;
};

}  // namespace lrfind::comm
