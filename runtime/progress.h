#pragma once
// Console progress on stderr (stdout stays free for --print-lr and the summary): a
// redrawn bar when stderr is a terminal, a timestamped log line every tenth of the run
// otherwise (batch logs). Both show the time per step and the time left, as tqdm does.
//
// Called from one thread (the sweep's, on rank 0). The clock is a parameter so that
// tests can drive the times.

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>

#include "finder/result.h"

namespace lrfind::runtime {

class ConsoleProgress final : public finder::SweepObserver {
 public:
  using Clock = std::chrono::steady_clock;

  // `interactive`: draw a bar; otherwise log lines. `stream` is not owned.
  ConsoleProgress(std::FILE* stream, bool interactive, std::function<Clock::time_point()> now = Clock::now);

  void onStart(const finder::SweepOptions& options, int world_size) override;
  void onStep(const finder::StepRecord& record) override;
  void onEnd(const finder::SweepResult& result) override;

 private:
  void drawBar(const finder::StepRecord& record, int64_t done, double elapsed);

  std::FILE* stream_;
  bool interactive_;
  std::function<Clock::time_point()> now_;
  int64_t total_ = 0;
  int64_t every_ = 1;
  std::size_t last_width_ = 0;  // of the bar line drawn last, to blank what a shorter one leaves
  Clock::time_point last_draw_{};
  Clock::time_point start_{};
};

// "2026-11-29 03:12:45" in local time.
std::string timestamp();

}  // namespace lrfind::runtime
