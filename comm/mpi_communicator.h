#pragma once
// Communicator over MPI for CPU tensors (float32/64, int32/64, uint8).
//
// The constructor duplicates the parent communicator (MPI_COMM_WORLD by default), so
// lrfind's traffic never mixes with a host application's, and sets MPI_ERRORS_RETURN on
// the duplicate: every failed call becomes a CommError naming the call, the MPI error
// string and the rank. A dtype outside the list above, or a ReduceOp outside the enum,
// is a CommError before any rank communicates. The communicators it creates are freed
// on destruction, and also when the constructor throws. Requires an initialized MPI
// (MpiEnvironment). Collectives follow the Communicator contract; calls come from the
// thread that initialized MPI.
// mpi.h stays out of this header.

#include <memory>

#include "comm/communicator.h"
#include "comm/mailbox.h"

namespace lrfind::comm {

class MpiCommunicator final : public Communicator {
 public:
  // `parent` is an MPI_Comm passed as void* (nullptr: MPI_COMM_WORLD).
  explicit MpiCommunicator(void* parent = nullptr);
  ~MpiCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "mpi"; }

  // Processes of this world on the same node (MPI_COMM_TYPE_SHARED).
  int localRank() const { return local_rank_; }
  int localSize() const { return local_size_; }

  void allreduce(at::Tensor& tensor, const AllreduceOptions& opts = {}) override;
  // Point-to-point steps (recursive doubling or a ring) that test() advances without
  // blocking: Open MPI moves messages only inside MPI calls, so a caller computing
  // meanwhile calls test() now and then. Each one has a tag of its own, so any number
  // may be under way at once (up to 8192).
  std::unique_ptr<Work> allreduceAsync(at::Tensor& tensor, const AllreduceOptions& opts = {}) override;
  void broadcast(at::Tensor& tensor, const BroadcastOptions& opts = {}) override;
  void gather(const at::Tensor& input, at::Tensor& output, const GatherOptions& opts = {}) override;
  void barrier() override;
  // The ranks with the same `color` (>= 0), ordered by `key` then rank, as a communicator
  // of their own (MPI_Comm_split): a tuning grid's rank groups. Collective over this
  // communicator. Bounded: the ranks first meet in this communicator's bounded barrier,
  // so a rank that never comes is a CommTimeout naming it, not a hang in the split. The
  // new communicator gets this one's wait policy, label and peer names (for its ranks).
  std::unique_ptr<MpiCommunicator> split(int color, int key);
  // Collective: a Mailbox over this communicator's ranks, on a duplicate of its own that
  // is never freed (MPI_Finalize releases it), for the reason Impl::announce_comm gives:
  // a message left unread must not reach a later communicator.
  std::unique_ptr<Mailbox> openMailbox();
  // Shared memory (comm/shm_allreduce.h) when every rank is on this node, and the
  // blocking calls of WaitPolicy::blocking are not asked for.
  std::unique_ptr<SharedBuffer> sharedBuffer(int64_t numel, c10::ScalarType dtype, std::string* why) override;

 private:
  struct Impl;
  class AllreduceWork;
  std::unique_ptr<Impl> impl_;
  int rank_ = 0;
  int size_ = 1;
  int local_rank_ = 0;
  int local_size_ = 1;
};

}  // namespace lrfind::comm
