#pragma once
// Runs another observer's callbacks on a worker thread, in order, so that slow work
// (the HDF5 append and flush after every step) stays off the training loop.
//
// onStart and onStep copy their arguments and return at once; onEnd waits until every
// earlier callback and the inner onEnd have run. A failure on the worker is rethrown
// by the next call on the sweep's thread (onStep or onEnd), and later callbacks are
// skipped. The inner observer is only ever called from the worker thread.

#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>

#include "finder/result.h"

namespace lrfind::runtime {

class AsyncObserver final : public finder::SweepObserver {
 public:
  explicit AsyncObserver(finder::SweepObserver& inner);
  ~AsyncObserver() override;  // finishes queued work, joins; never throws
  AsyncObserver(const AsyncObserver&) = delete;
  AsyncObserver& operator=(const AsyncObserver&) = delete;

  void onStart(const finder::SweepOptions& options, int world_size) override;
  void onStep(const finder::StepRecord& record) override;
  void onEnd(const finder::SweepResult& result) override;

 private:
  void post(std::function<void()> job);
  void waitIdle();
  void rethrowFailure();
  void loop();

  finder::SweepObserver& inner_;
  std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable idle_cv_;
  std::deque<std::function<void()>> jobs_;
  bool busy_ = false;
  bool stop_ = false;
  std::exception_ptr failure_;
  std::thread worker_;
};

}  // namespace lrfind::runtime
