#pragma once
// Allreduce through memory that every rank maps, for ranks on one node (the MPI
// backend's gradient buffer; see SharedBuffer in comm/communicator.h).
//
// Why: at np 2 on one node, Open MPI's shared-memory transport moves a 7.45 MB gradient
// through a ring (reduce-scatter, allgather: each rank receives the tensor once, copies
// it, and adds half of it) in about 2.2 ms, while the copies it needs take about 0.4 ms
// of memory bandwidth. When the gradients already live in memory that every rank maps,
// each rank can add its 1/W of every bucket straight from the others' buffers and write
// the sum into all of them: no message, no intermediate copy.
//
// The segment (POSIX shared memory, created by rank 0, opened by the others, unlinked
// by rank 0 as soon as all have it mapped or the attempt fails, so that once set up
// nothing outlives the job, not even after kill -9):
//   one 4 KiB-aligned header: a cookie, then per rank two counters on cache lines of
//   their own: `ready` (the last bucket this rank has written and published) and `done`
//   (the last bucket whose 1/W this rank has summed and written into every buffer);
//   then one buffer per rank, each 4 KiB-aligned.
// Buckets are numbered in the order they start, the same on every rank (the contract of
// allreduceAsync). Rank r sums piece r of bucket n (its r-th 1/W) once every rank's
// ready >= n, as buffer 0 + buffer 1 + ... in rank order, writes the sum into every
// buffer (one pass: each element is read from every buffer and written to every buffer
// once) and publishes done = n; bucket n is complete on a rank once every done >= n.
// Each piece is summed once, by its owner, and copied: every rank ends with the same
// bits, and since every element is summed in rank order, the bits do not depend on how
// the buffer is cut into buckets (a rebuilt bucket layout changes nothing). Nobody touches a piece that its owner may still be writing: a
// rank reads only its own piece of the others' buffers, and writes a piece of another's
// buffer only after that rank published it ready, and no rank reuses its buffer (the
// next step's gradients) before every rank is done with it.
// Waits are bounded (comm/wait.h) and name the ranks whose counters lag: a rank that
// never published the bucket, else one that did not finish its piece.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "comm/communicator.h"

namespace lrfind::comm {

// How the buffer and its communicator poll each other.
struct ShmHooks {
  // Runs in every poll of the buffer's waits (the MPI backend's heartbeat).
  std::function<void()> tick;
  // Called with (buffer, its progress function) once the buffer exists and with
  // (buffer, nullptr) when it goes. The communicator runs that function in every poll of
  // its own waits, so that this rank sums its pieces of the buckets under way while it
  // waits for anything else (the loss gather, say) instead of leaving the other ranks
  // waiting for them.
  std::function<void(const void*, std::function<void()>)> set_poller;
};

// Collective over `comm` (a host backend): a SharedBuffer of `numel` elements of `dtype`
// (float, double) per rank, or nullptr with the reason in *why when some rank cannot map
// it (shared memory missing or full) or the world has one rank. Every rank gets the
// same answer.
std::unique_ptr<SharedBuffer> makeShmBuffer(Communicator& comm, int64_t numel, c10::ScalarType dtype,
                                            ShmHooks hooks, std::string* why);

}  // namespace lrfind::comm
