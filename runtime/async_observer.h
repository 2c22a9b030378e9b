#pragma once
// Slow work (the HDF5 append and flush after every step) off the training loop.
//
// SerialWorker runs jobs on a worker thread of its own, in the order they came. A job
// that throws is kept: rethrowFailure() (and so the next submit()) rethrows it on the
// caller's thread, and later jobs are skipped.
//
// AsyncObserver runs another observer's callbacks on a SerialWorker. onStart and onStep
// copy their arguments and return at once; onEnd waits until every earlier callback and
// the inner onEnd have run. A failure on the worker is rethrown by the next call on the
// sweep's thread (onStep or onEnd). The inner observer is only ever called from the
// worker thread.

#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>

#include "finder/result.h"

namespace lrfind::runtime {

class SerialWorker {
 public:
  SerialWorker();
  ~SerialWorker();  // finishes queued work, joins; never throws
  SerialWorker(const SerialWorker&) = delete;
  SerialWorker& operator=(const SerialWorker&) = delete;

  // Queues `job`; does not rethrow.
  void post(std::function<void()> job);
  // rethrowFailure(), then post().
  void submit(std::function<void()> job);
  // Returns once every job queued so far has run.
  void waitIdle();
  // The first job failure, if any, rethrown.
  void rethrowFailure();

 private:
  void loop();

  std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable idle_cv_;
  std::deque<std::function<void()>> jobs_;
  bool busy_ = false;
  bool stop_ = false;
  std::exception_ptr failure_;
  std::thread worker_;  // last: started once everything above exists
};

class AsyncObserver final : public finder::SweepObserver {
 public:
  explicit AsyncObserver(finder::SweepObserver& inner) : inner_(inner) {}

  void onStart(const finder::SweepOptions& options, int world_size) override;
  void onStep(const finder::StepRecord& record) override;
  void onEnd(const finder::SweepResult& result) override;

 private:
  finder::SweepObserver& inner_;
  SerialWorker worker_;  // destroyed first: its jobs use inner_
};

}  // namespace lrfind::runtime
