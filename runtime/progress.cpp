#include "runtime/progress.h"

#include <algorithm>
#include <ctime>
#include <string>

#include "runtime/report.h"

namespace lrfind::runtime {

std::string timestamp() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

ConsoleProgress::ConsoleProgress(std::FILE* stream, bool interactive)
    : stream_(stream), interactive_(interactive) {}

void ConsoleProgress::onStart(const finder::SweepOptions& options, int world_size) {
  total_ = options.num_training;
  every_ = std::max<int64_t>(1, total_ / 10);
  start_ = std::chrono::steady_clock::now();
  if (!interactive_) {
    std::fprintf(stream_, "[%s] lrfind: sweep of %lld steps, lr %s -> %s (%s), %d rank(s)\n",
                 timestamp().c_str(), static_cast<long long>(total_), formatLr(options.min_lr).c_str(),
                 formatLr(options.max_lr).c_str(), finder::toString(options.mode), world_size);
    std::fflush(stream_);
  }
}

void ConsoleProgress::onStep(const finder::StepRecord& r) {
  const auto now = std::chrono::steady_clock::now();
  const int64_t done = r.step + 1;
  if (interactive_) {
    if (now - last_draw_ < std::chrono::milliseconds(100) && done != total_) return;
    last_draw_ = now;
    constexpr int kBar = 30;
    const int filled = static_cast<int>(kBar * done / std::max<int64_t>(total_, 1));
    std::string bar(filled, '#');
    bar.resize(kBar, '.');
    std::fprintf(stream_, "\r[%s] %lld/%lld  lr %-9s loss %-10.5g", bar.c_str(), static_cast<long long>(done),
                 static_cast<long long>(total_), formatLr(r.lr).c_str(), r.loss);
  } else if (done % every_ == 0 || done == 1) {
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    std::fprintf(stream_, "[%s] step %lld/%lld lr=%s loss=%.5g raw=%.5g (%.3g s/step)\n", timestamp().c_str(),
                 static_cast<long long>(done), static_cast<long long>(total_), formatLr(r.lr).c_str(), r.loss,
                 r.loss_raw, elapsed / static_cast<double>(done));
  }
  std::fflush(stream_);
}

void ConsoleProgress::onEnd(const finder::SweepResult& result) {
  if (interactive_) {
    std::fputc('\n', stream_);
  } else {
    std::fprintf(stream_, "[%s] lrfind: sweep ended after %lld steps: %s\n", timestamp().c_str(),
                 static_cast<long long>(result.stepsCompleted()), finder::toString(result.stop_reason));
  }
  std::fflush(stream_);
}

void ObserverList::onStart(const finder::SweepOptions& options, int world_size) {
  for (auto* o : observers_) o->onStart(options, world_size);
}
void ObserverList::onStep(const finder::StepRecord& record) {
  for (auto* o : observers_) o->onStep(record);
}
void ObserverList::onEnd(const finder::SweepResult& result) {
  for (auto* o : observers_) o->onEnd(result);
}

}  // namespace lrfind::runtime
