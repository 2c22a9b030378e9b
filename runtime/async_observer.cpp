#include "runtime/async_observer.h"

namespace lrfind::runtime {

SerialWorker::SerialWorker() : worker_([this] { loop(); }) {}

SerialWorker::~SerialWorker() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_one();
  worker_.join();
}

void SerialWorker::loop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    work_cv_.wait(lock, [this] { return stop_ || !jobs_.empty(); });
    if (jobs_.empty()) return;  // stop_ with nothing left to do
    auto job = std::move(jobs_.front());
    jobs_.pop_front();
    busy_ = true;
    const bool skip = failure_ != nullptr;
    lock.unlock();
    std::exception_ptr error;
    if (!skip) {
      try {
        job();
      } catch (...) {
        error = std::current_exception();
      }
    }
    job = nullptr;  // what it captured goes before the worker reports idle
    lock.lock();
    if (error && !failure_) failure_ = error;
    busy_ = false;
    if (jobs_.empty()) idle_cv_.notify_all();
  }
}

void SerialWorker::post(std::function<void()> job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    jobs_.push_back(std::move(job));
  }
  work_cv_.notify_one();
}

void SerialWorker::submit(std::function<void()> job) {
  rethrowFailure();
  post(std::move(job));
}

void SerialWorker::waitIdle() {
  std::unique_lock<std::mutex> lock(mu_);
  idle_cv_.wait(lock, [this] { return jobs_.empty() && !busy_; });
}

void SerialWorker::rethrowFailure() {
  std::exception_ptr failure;
  {
    std::lock_guard<std::mutex> lock(mu_);
    failure = failure_;
  }
  if (failure) std::rethrow_exception(failure);
}

void AsyncObserver::onStart(const finder::SweepOptions& options, int world_size) {
  worker_.post([this, options, world_size] { inner_.onStart(options, world_size); });
}

void AsyncObserver::onStep(const finder::StepRecord& record) {
  worker_.submit([this, record] { inner_.onStep(record); });
}

void AsyncObserver::onEnd(const finder::SweepResult& result) {
  // `result` outlives the job: we wait for it below.
  worker_.post([this, &result] { inner_.onEnd(result); });
  worker_.waitIdle();
  worker_.rethrowFailure();
}

}  // namespace lrfind::runtime
