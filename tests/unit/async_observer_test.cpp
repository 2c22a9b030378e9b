#include "runtime/async_observer.h"

#include <stdexcept>
#include <thread>

#include <gtest/gtest.h>

namespace lrfind::runtime {
namespace {

class Slow : public finder::SweepObserver {
 public:
  void onStart(const finder::SweepOptions&, int world) override { log.push_back(-world); }
  void onStep(const finder::StepRecord& r) override {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    if (r.step == fail_at) throw std::runtime_error("disk full");
    log.push_back(r.step);
    thread = std::this_thread::get_id();
  }
  void onEnd(const finder::SweepResult& r) override { log.push_back(1000 + r.stepsCompleted()); }
  std::vector<int64_t> log;
  int64_t fail_at = -1;
  std::thread::id thread;
};

TEST(AsyncObserver, RunsEverythingInOrderOffThreadAndOnEndWaits) {
  Slow inner;
  AsyncObserver async(inner);
  async.onStart(finder::SweepOptions{}, 3);
  finder::StepRecord r;
  for (int64_t k = 0; k < 5; ++k) {
    r.step = k;
    async.onStep(r);  // returns before the 2 ms of work
  }
  finder::SweepResult res;
  res.lr.assign(5, 0.1);
  async.onEnd(res);  // waits: everything is done afterwards
  EXPECT_EQ(inner.log, (std::vector<int64_t>{-3, 0, 1, 2, 3, 4, 1005}));
  EXPECT_NE(inner.thread, std::this_thread::get_id());
}

TEST(AsyncObserver, WorkerFailureSurfacesOnTheCallersThread) {
  Slow inner;
  inner.fail_at = 1;
  AsyncObserver async(inner);
  finder::StepRecord r;
  r.step = 0;
  async.onStep(r);
  r.step = 1;
  async.onStep(r);
  r.step = 2;
  async.onStep(r);  // may or may not see the failure yet
  finder::SweepResult res;
  EXPECT_THROW(
      {
        for (int i = 0; i < 3; ++i) async.onStep(r);
        async.onEnd(res);
      },
      std::runtime_error);
  EXPECT_EQ(inner.log, (std::vector<int64_t>{0})) << "nothing runs after the failure";
}

}  // namespace
}  // namespace lrfind::runtime
