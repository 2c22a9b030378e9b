#pragma once
// Byte messages between single ranks, beside the collectives: a tuning grid's rank
// groups tell world rank 0 how their sweeps go, and rank 0 answers (runtime/grid_run.h).
// Nothing here blocks but flush(), and it is bounded. Messages from one rank to another
// arrive in the order they were sent. One thread at a time, like a Communicator.

#include <memory>
#include <optional>
#include <string>

#include "comm/wait.h"

namespace lrfind::comm {

struct Message {
  int source = -1;
  std::string bytes;
};

class Mailbox {
 public:
  virtual ~Mailbox() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Starts sending `bytes` to rank `dest` and returns; the mailbox keeps them until the
  // send completes.
  virtual void send(int dest, std::string bytes) = 0;
  // The next message that has arrived, from any rank, or nullopt; never waits.
  virtual std::optional<Message> receive() = 0;
  // Returns once every send has left this rank; CommTimeout past policy.timeout, naming
  // the ranks still to take theirs.
  virtual void flush(const WaitPolicy& policy, const std::string& label) = 0;
};

}  // namespace lrfind::comm
