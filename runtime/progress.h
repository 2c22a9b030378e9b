#pragma once
// Console progress on stderr (stdout stays free for --print-lr and the summary): a
// redrawn bar when stderr is a terminal, a timestamped log line every tenth of the run
// otherwise (batch logs).

#include <chrono>
#include <cstdio>
#include <vector>

#include "finder/result.h"

namespace lrfind::runtime {

class ConsoleProgress final : public finder::SweepObserver {
 public:
  // `interactive`: draw a bar; otherwise log lines.
  ConsoleProgress(std::FILE* stream, bool interactive);

  void onStart(const finder::SweepOptions& options, int world_size) override;
  void onStep(const finder::StepRecord& record) override;
  void onEnd(const finder::SweepResult& result) override;

 private:
  std::FILE* stream_;
  bool interactive_;
  int64_t total_ = 0;
  int64_t every_ = 1;
  std::chrono::steady_clock::time_point last_draw_{};
  std::chrono::steady_clock::time_point start_{};
};

// Fans every event out to several observers, in order.
class ObserverList final : public finder::SweepObserver {
 public:
  void add(finder::SweepObserver* observer) { observers_.push_back(observer); }
  void onStart(const finder::SweepOptions& options, int world_size) override;
  void onStep(const finder::StepRecord& record) override;
  void onEnd(const finder::SweepResult& result) override;

 private:
  std::vector<finder::SweepObserver*> observers_;
};

// "2026-11-29 03:12:45" in local time.
std::string timestamp();

}  // namespace lrfind::runtime
