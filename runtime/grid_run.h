#pragma once
// How a tuning grid's rank groups report to world rank 0, and how rank 0 keeps the
// grid's results (README "Tuning grid").
//
// Every group runs its sweeps one after another; its leader (group rank 0) reports each
// one through a GridReporter: start, every step, end. World rank 0 holds the one
// GridCollector, which writes the results file as the reports come, from its own group
// directly and from the other groups' leaders as Mailbox messages, read whenever rank 0
// polls (every step of its own sweeps, and while it waits at the end).
//
// The protocol with several groups, all on the world's Mailbox:
// - leader -> rank 0: kStart, kStep, kEnd of each sweep; kFailed when the group failed
//   (an error all its ranks agreed on: it runs no more sweeps); kDone after its last.
// - rank 0 -> leaders: kAbort when the grid must stop (another group failed, a signal):
//   the group stops its sweep after the current step, as after a signal.
// - rank 0 -> every rank whose group is done: kKeepAlive every quarter of the timeout,
//   then kFinish with the exit code once every group is done. A rank waits for kFinish
//   at most the timeout past the last word from rank 0.
// - rank 0 gives up on a group that has said nothing for the timeout (a stalled rank
//   holds its whole group): CommTimeout naming the group's leader.
// With one group (the default) the grid is the world's sweeps one after another, every
// failure is agreed by the whole world, and no message is sent.
//
// LibTorch-free.

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "comm/mailbox.h"
#include "finder/result.h"
#include "runtime/grid.h"
#include "runtime/grid_summary.h"
#include "runtime/run_info.h"

namespace lrfind::runtime {

class SerialWorker;
class GridResultsWriter;

// A group leader's reports to world rank 0.
class GridReporter {
 public:
  virtual ~GridReporter() = default;
  // Sweep `sweep.index` starts: its grid point, group, start time and RunInfo.
  virtual void start(const GridSweep& sweep) = 0;
  virtual void step(std::size_t index, const finder::StepRecord& record) = 0;
  // The sweep ended: result's stop_reason, stop_test, stop_scale and error (rank 0 has
  // the curve from the steps and computes the suggestions itself).
  virtual void end(std::size_t index, const finder::SweepResult& result) = 0;
  // The group failed during sweep `index` (an agreed error; `text` its message, `exit_code`
  // what the job should exit with); it runs no more sweeps.
  virtual void failed(std::size_t index, const std::string& text, int exit_code) = 0;
  // The group ran its last sweep.
  virtual void done() = 0;
  // Reads what rank 0 sent; true once it asked the grid to stop (then `why` says why).
  virtual bool aborted(std::string* why) = 0;
};

// The observer that runSweep() reports sweep `index` to on the leader: onStep and onEnd
// go to `reporter` (onStart is the caller's: it knows the grid point).
std::unique_ptr<finder::SweepObserver> sweepReporter(GridReporter& reporter, std::size_t index);

// What world rank 0 needs to know of the grid.
struct GridPlan {
  std::vector<GridAxis> axes;
  std::vector<GridPoint> points;              // grid order
  std::vector<finder::SweepOptions> options;  // each sweep's
  std::vector<int> group_of;                  // each sweep's rank group
  int groups = 1;
  int ranks_per_sweep = 1;
  int world_size = 1;
  std::string config;  // the run's TOML
  std::chrono::milliseconds timeout{300000};
  std::vector<std::string> peer_names;  // world ranks' "host, pid N"
};

// World rank 0. Creates `<out>.partial` at once (IoError when it cannot).
class GridCollector {
 public:
  // `mailbox`: the world's, with several groups; nullptr with one.
  GridCollector(GridPlan plan, const std::string& out, comm::Mailbox* mailbox);
  ~GridCollector();
  GridCollector(const GridCollector&) = delete;
  GridCollector& operator=(const GridCollector&) = delete;

  // The reporter of world rank 0's own group: straight into this collector.
  GridReporter& localReporter();

  // Reads every message that has arrived and sends the keep-alives due; CommTimeout when
  // a running group has been silent for the timeout. Cheap: called every step.
  void poll();
  // Asks every group still running to stop after its current step (once).
  void abort(const std::string& why);
  // Polls until every group is done or failed; bounded by poll()'s rule.
  void waitForGroups();
  // Every rank of the other groups: kFinish with `exit_code`. Then waits, bounded, until
  // the messages have left.
  void releaseRanks(int exit_code);

  // The first failure reported (its text names the sweep), or "" — and the exit code it
  // asked for.
  const std::string& failure() const { return failure_; }
  int failureExitCode() const { return failure_code_; }
  // Whether a sweep was interrupted (a signal on its group).
  bool interrupted() const { return interrupted_; }

  // Writes the summary and the grid's stop reason, closes the file (renamed to `<out>`
  // when the grid is complete), and returns the sweeps in grid order (those that ran).
  std::vector<GridSweep> finish(finder::StopReason stop, const std::string& error, GridSummary* summary);
  // Where the results are now.
  std::string currentPath() const;

 private:
  class Local;
  void onStart(const GridSweep& sweep);
  void onStep(std::size_t index, const finder::StepRecord& record);
  void onEnd(std::size_t index, const finder::SweepResult& end, double ended_at);
  void onFailed(std::size_t index, const std::string& text, int exit_code);
  void onDone(int group);
  void handle(const comm::Message& message);

  GridPlan plan_;
  comm::Mailbox* mailbox_;
  std::unique_ptr<GridResultsWriter> writer_;
  std::unique_ptr<SerialWorker> worker_;  // the writer's thread
  std::unique_ptr<Local> local_;
  std::vector<std::unique_ptr<GridSweep>> sweeps_;  // by index; null until started
  std::size_t ended_ = 0;  // sweeps that ended, for the console
  std::vector<bool> group_done_;
  std::vector<std::chrono::steady_clock::time_point> heard_;  // per group, last message
  std::chrono::steady_clock::time_point last_keepalive_{};
  std::string failure_;
  int failure_code_ = 0;
  bool interrupted_ = false;
  bool abort_sent_ = false;
};

// The leader of a group other than world rank 0's: reports as Mailbox messages.
std::unique_ptr<GridReporter> mailboxReporter(comm::Mailbox& mailbox);

// A rank whose group is done (any group but world rank 0's, with several groups): waits
// for rank 0's kFinish and returns its exit code. Bounded: CommTimeout when rank 0 says
// nothing for policy.timeout (it repeats a keep-alive every quarter of the timeout).
// `names`: the world's peer names, for the message.
int waitForRelease(comm::Mailbox& mailbox, const comm::WaitPolicy& policy, const std::vector<std::string>& names);

// Seconds since the epoch, for started_at and ended_at.
double wallClockNow();

}  // namespace lrfind::runtime
