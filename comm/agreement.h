#pragma once
// Agreement across ranks: every rank learns the same outcome of work that each rank did
// alone, so that all of them take the same branch, print one message and exit with one
// code. The one home for it: setup checks (agreeOnSuccess), the sweep's per-step status
// (a FailureKind slot in the step's gather, then broadcastText from the failing rank),
// and the exception type that marks an agreed failure.
//
// Contract: every function here that takes a Communicator is a collective over it (no
// communication when it has one rank); all ranks call it at the same point, in the same
// order.

#include <cstdint>
#include <exception>
#include <functional>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "common/error.h"

namespace lrfind::comm {

// Marks an exception that every rank throws with the same message after the ranks
// agreed on a failure: one rank's report is enough.
class AgreedFailure {
 public:
  virtual ~AgreedFailure() = default;
};

// Agreed<InputError>, Agreed<CommError>, ...: catchable as the base type.
template <typename Base>
class Agreed : public Base, public AgreedFailure {
 public:
  using Base::Base;
};

inline bool isAgreed(const std::exception& e) { return dynamic_cast<const AgreedFailure*>(&e) != nullptr; }

// What went wrong on one rank, as a number that travels in a tensor slot. The larger
// kind wins nothing: the lowest failing rank's kind is the agreed one.
enum class FailureKind : int64_t {
  kNone = 0,
  kError = 1,  // any failure: lrfind::Error, LibTorch, std::exception
  kInput = 2,  // lrfind::InputError: bad input, exit code 2
};

// The kind of a caught exception.
FailureKind failureKind(const std::exception& e);

// Throws Agreed<InputError> for kInput, Agreed<Error> otherwise (kNone is a caller bug).
[[noreturn]] void throwAgreed(FailureKind kind, const std::string& message);

// Every rank calls it; all return root's `text`, cut to kMaxTextBytes - 1 bytes. For
// error messages that one rank knows and every rank must print.
constexpr int kMaxTextBytes = 1024;
std::string broadcastText(Communicator& comm, int root, const std::string& text);

// Every rank calls it; `root` returns every rank's `text`, cut to kGatherTextBytes - 1
// bytes, in rank order (the others: an empty vector). For what each rank knows of
// itself and root must compare or name: host and pid, the GPU it runs on.
constexpr int kGatherTextBytes = 128;
std::vector<std::string> gatherText(Communicator& comm, int root, const std::string& text);

// Runs `body` on every rank and makes the ranks agree on its outcome: if it threw on
// any rank, every rank throws the same exception type (Agreed<InputError> or
// Agreed<Error>) with the message of the lowest failing rank, prefixed with "rank R: "
// when the world has more than one rank. Costs two small collectives (a gather to rank
// 0, so that a rank that never arrives is named, and a broadcast), three on failure;
// use it around setup, before the sweep. A CommTimeout passes through unchanged, and so
// does a failure already agreed inside `body` (a nested agreement).
void agreeOnSuccess(Communicator& comm, const std::function<void()>& body);

}  // namespace lrfind::comm
