#pragma once
// Communicator over NCCL for CUDA tensors, one GPU per rank.
//
// - Setup, collective over a host communicator (MPI), in agreed steps (agreeOnSuccess):
//   (1) every rank checks that the NCCL library loaded is the one nccl.h described and
//   makes its device current, and rank 0 creates the ncclUniqueId; (2) the id is
//   broadcast; (3) every rank starts joining (non-blocking); (4) joining finishes within
//   its own deadline (NcclOptions::init_timeout). A failure on any rank in (1), (3) or
//   (4) ends every rank with the same agreed error, so no rank waits in NCCL for a peer
//   that is gone.
// - Ordering: a collective is enqueued on the device's *current* stream (LibTorch's,
//   when LibTorch has CUDA; else the legacy default stream), so it sees every kernel
//   queued before it on that stream (e.g. the backward pass that wrote the gradients),
//   and work queued after it sees its result. Calls return before the data moved.
// - allreduceAsync runs on the communicator's own communication stream on its device,
//   created on first use (a high-priority stream from LibTorch's pool; without CUDA in
//   LibTorch, a non-blocking stream of the toolkit's runtime, destroyed with the
//   communicator), so the current stream computes on meanwhile. The comm stream first
//   waits for an event recorded on the current stream (the allreduce sees every kernel
//   queued there before the call: the gradient it sums), then runs the same ncclAllReduce
//   as allreduce() (the same bits) and records a done event. LibTorch's caching allocator
//   is told that the comm stream uses the tensor, so its memory is not reused before the
//   allreduce has run, even if the tensor is freed earlier.
//   Work::test() never blocks: true once the done event has completed on the device; it
//   reports an asynchronous NCCL error as a CommError. Work::wait() does not block the
//   host either: it makes the calling thread's current stream on the device wait for the
//   done event, so work queued after it there (optimizer.step()) sees the result, as
//   after allreduce(); synchronize() then waits for it, bounded (it covers the comm
//   stream too). A Work destroyed unfinished releases its event; the allreduce stays
//   enqueued.
// - Threads: calls are never concurrent, but may come from two threads. The gradient
//   averager starts allreduces and test()s them from autograd's device thread (hooks on
//   CUDA gradients run there) while the main thread waits in backward(); the main thread
//   makes every other call, wait() and synchronize() included. No call relies on the
//   calling thread's current device: each names device() (allreduceAsync and wait() make
//   it current for their duration), and "current stream" is the calling thread's.
// - Bounded waits: synchronize() polls the stream and ncclCommGetAsyncError() with
//   boundedWait (comm/wait.h) until the work is done or the timeout passes; on timeout or an asynchronous NCCL error it
//   aborts the NCCL communicator and throws CommError naming the rank, the device and
//   the cause. After an abort every call throws.
// - Shutdown: the destructor finalizes the NCCL communicator, waiting at most the timeout
//   for outstanding work, and aborts it if that fails. Destroyed while an exception
//   unwinds (this rank failed, or all ranks agreed on a failure), it aborts at once:
//   the peers may be gone, and a graceful finalize would wait for them.
// - Dtypes: float32/64, float16, bfloat16, int32/64, uint8. Tensors must be contiguous
//   and on this rank's device.
// cuda_runtime.h and nccl.h stay out of this header.

#include <chrono>
#include <memory>
#include <string>

#include "comm/communicator.h"

namespace lrfind::comm {

struct NcclOptions {
  int device = 0;  // this rank's CUDA device ordinal
  // Bounds synchronize() and shutdown; it becomes the communicator's waitPolicy().
  // lrfind_dist names its timeout --comm-timeout.
  WaitPolicy wait;
  // Bounds joining the communicator, which takes seconds on many GPUs (NCCL connects
  // every pair it will use). 0: twice wait.timeout, and at least 60 s (initTimeout).
  std::chrono::milliseconds init_timeout{0};
};

// The joining deadline that `options` give.
std::chrono::milliseconds initTimeout(const NcclOptions& options);

// "" when nccl.h's NCCL_VERSION_CODE and the loaded library's ncclGetVersion() agree,
// else the error that names both and the library's path. (Two NCCL installs mixed: the
// header of one, the library of the other.)
std::string ncclVersionMismatch(int header_code, int library_code, const std::string& library_path);

class NcclComm;    // RAII owner of one ncclComm_t (nccl_communicator.cpp)
class NcclStream;  // the communication stream of allreduceAsync (nccl_communicator.cpp)

class NcclCommunicator final : public Communicator {
 public:
  // Collective over `bootstrap` (every rank calls it; rank and size are bootstrap's).
  NcclCommunicator(Communicator& bootstrap, const NcclOptions& options);
  ~NcclCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "nccl"; }
  int device() const { return options_.device; }

  void allreduce(at::Tensor& tensor, const AllreduceOptions& opts = {}) override;
  // On the communication stream; see the header comment for what test() and wait() mean.
  std::unique_ptr<Work> allreduceAsync(at::Tensor& tensor, const AllreduceOptions& opts = {}) override;
  // Its calls may come from autograd's device thread (see the threading note above).
  bool asyncFromAnyThread() const override { return true; }
  void broadcast(at::Tensor& tensor, const BroadcastOptions& opts = {}) override;
  // NCCL has no gather: every rank sends to root, which receives all in one group.
  void gather(const at::Tensor& input, at::Tensor& output, const GatherOptions& opts = {}) override;
  // An allreduce of one element, waited for.
  void barrier() override;
  void synchronize() override;

  // Aborts the NCCL communicator now: pending and later calls fail instead of waiting,
  // and destruction no longer waits. For a caller that learned of a failure elsewhere
  // (another communicator timed out) and is about to end. From the thread that uses the
  // communicator. The destructor calls it when destroyed during unwinding.
  void abort() noexcept;

 private:
  class AllreduceWork;  // allreduceAsync's Work: the done event (nccl_communicator.cpp)

  void* stream() const;  // cudaStream_t of the current stream on device()

  NcclOptions options_;
  int uncaught_at_start_ = 0;  // std::uncaught_exceptions() when constructed
  int rank_ = 0;
  int size_ = 1;
  // Created by the first allreduceAsync. Declared before comm_, so destroyed after it:
  // finalizing the NCCL communicator flushes the work still queued on the stream.
  std::unique_ptr<NcclStream> comm_stream_;
  std::unique_ptr<NcclComm> comm_;
};

// The NCCL library's version, "2.28.9" (ncclGetVersion); safe to call without a GPU.
std::string ncclRuntimeVersion();

}  // namespace lrfind::comm
