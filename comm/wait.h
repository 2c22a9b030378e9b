#pragma once
// The one bounded wait that every backend finishes its collectives with (c10d has a
// timeout and a watchdog per collective; Horovod warns about stalled ranks). A rank that
// waits polls, spinning only for the first milliseconds and then sleeping with a
// growing pause, so a long wait costs almost no CPU; it warns once when the wait passes
// `stall_warning`, and throws CommTimeout when it passes `timeout`.
//
// Messages name what the wait was for: the communicator's label (the sweep sets "step
// 412"), and the ranks that have not arrived where the backend knows them (a gather's
// root does: its receives are per rank), with each rank's host and pid once
// setPeerNames has been called.

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "common/error.h"

namespace lrfind::comm {

// A collective did not complete within its deadline. The communicator it happened on
// is unusable afterwards (its operation may still be pending): end the process, or at
// least stop using it.
class CommTimeout : public CommError {
 public:
  using CommError::CommError;
};

struct WaitPolicy {
  std::chrono::milliseconds timeout = std::chrono::seconds(300);
  // Calls on_stall once per wait that lasts longer than this; 0 never does.
  std::chrono::milliseconds stall_warning = std::chrono::seconds(60);
  // Gets "step 412: waiting 60 s for rank 3 (node07, pid 1234)". Unset: no warning.
  std::function<void(const std::string&)> on_stall;
  // How messages name the timeout ("raise it"); lrfind_dist passes --comm-timeout.
  std::string timeout_option = "WaitPolicy::timeout";
  // The MPI backend's old blocking calls, without any deadline: only for the benchmark
  // that measures what bounded waits cost (tests/bench/bounded_wait.cpp).
  bool blocking = false;
};

// Polls `done` until it returns true, within `policy`. `waiting_for()` says who has not
// arrived ("rank 3 (node07, pid 1234)", "rank 0 (node01, pid 99) in broadcast"); it is
// called only for a message. `label` prefixes the messages ("step 412: ..."). `done` may
// throw (a backend's error); the exception passes through.
void boundedWait(const std::function<bool()>& done, const WaitPolicy& policy, const std::string& label,
                 const std::function<std::string()>& waiting_for);

// "rank 3 (node07, pid 1234)" or "ranks 1, 3 (node07, pid 1234; node08, pid 77)":
// `names` holds one entry per rank (empty: ranks by number only).
std::string describeRanks(const std::vector<int>& ranks, const std::vector<std::string>& names);

}  // namespace lrfind::comm
