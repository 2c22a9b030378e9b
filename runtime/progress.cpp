#include "runtime/progress.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <string>
#include <utility>

#include <sys/ioctl.h>
#include <unistd.h>

#include "runtime/format.h"

namespace lrfind::runtime {
namespace {

constexpr int kMaxBar = 30, kMinBar = 10;

// A line as wide as the terminal wraps, and \r then redraws only its second half: the
// bar is sized to the terminal's width, asked at every draw so that a resize is seen.
std::size_t terminalColumns(std::FILE* stream) {
  winsize ws{};
  if (::ioctl(::fileno(stream), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  return 80;
}

int digits(int64_t v) { return static_cast<int>(std::to_string(v).size()); }

// Seconds per step so far, and the seconds left to the last scheduled step at that rate
// (a sweep that diverges ends sooner).
struct Pace {
  double per_step, left;
};

Pace paceAt(int64_t done, int64_t total, double elapsed) {
  const double per_step = elapsed / static_cast<double>(done);
  return {per_step, per_step * static_cast<double>(std::max<int64_t>(total - done, 0))};
}

}  // namespace

std::string timestamp() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

ConsoleProgress::ConsoleProgress(std::FILE* stream, bool interactive, std::function<Clock::time_point()> now)
    : stream_(stream), interactive_(interactive), now_(std::move(now)) {}

void ConsoleProgress::onStart(const finder::SweepOptions& options, int world_size) {
  total_ = options.num_training;
  every_ = std::max<int64_t>(1, total_ / 10);
  start_ = now_();
  last_draw_ = Clock::time_point{};
  last_width_ = 0;
  if (!interactive_) {
    std::fprintf(stream_, "[%s] lrfind: sweep of %lld steps, lr %s -> %s (%s), %d rank(s)\n",
                 timestamp().c_str(), static_cast<long long>(total_), formatLr(options.min_lr).c_str(),
                 formatLr(options.max_lr).c_str(), finder::toString(options.mode), world_size);
    std::fflush(stream_);
  }
}

void ConsoleProgress::onStep(const finder::StepRecord& r) {
  const auto now = now_();
  const int64_t done = r.step + 1;
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  if (interactive_) {
    if (now - last_draw_ < std::chrono::milliseconds(100) && done != total_) return;
    last_draw_ = now;
    drawBar(r, done, elapsed);
  } else if (done % every_ == 0 || done == 1) {
    const Pace pace = paceAt(done, total_, elapsed);
    char val[32] = "";
    if (!std::isnan(r.val_loss)) std::snprintf(val, sizeof val, " val=%.5g", r.val_loss);
    std::fprintf(stream_, "[%s] step %lld/%lld lr=%s loss=%.5g raw=%.5g%s (%.3g s/step, %s elapsed, ETA %s)\n",
                 timestamp().c_str(), static_cast<long long>(done), static_cast<long long>(total_),
                 formatLr(r.lr).c_str(), r.loss, r.loss_raw, val, pace.per_step,
                 formatDuration(elapsed).c_str(), formatDuration(pace.left).c_str());
  }
  std::fflush(stream_);
}

void ConsoleProgress::drawBar(const finder::StepRecord& r, int64_t done, double elapsed) {
  // tqdm's layout: counts, then "elapsed<left, rate". Fixed-width fields keep the bar
  // from changing length as the lr and loss change.
  const Pace pace = paceAt(done, total_, elapsed);
  char tail[192];
  std::snprintf(tail, sizeof tail, "] %*lld/%lld lr %-8s loss %-9.4g %s<%s, %.3g s/step", digits(total_),
                static_cast<long long>(done), static_cast<long long>(total_), formatLr(r.lr).c_str(), r.loss,
                formatDuration(elapsed).c_str(), formatDuration(pace.left).c_str(), pace.per_step);
  const std::string rest = tail;
  // The last column stays empty: writing into it makes some terminals wrap.
  const std::size_t room = terminalColumns(stream_) - 1;
  const int bar_width =
      static_cast<int>(std::clamp<std::ptrdiff_t>(static_cast<std::ptrdiff_t>(room) - 1 -
                                                      static_cast<std::ptrdiff_t>(rest.size()),
                                                  kMinBar, kMaxBar));
  const auto filled = static_cast<std::size_t>(bar_width * done / std::max<int64_t>(total_, 1));
  std::string line = "[" + std::string(std::min<std::size_t>(filled, bar_width), '#');
  line.resize(1 + static_cast<std::size_t>(bar_width), '.');
  line += rest;
  if (line.size() > room) line.resize(room);
  const std::size_t width = line.size();
  if (width < last_width_) line.append(last_width_ - width, ' ');
  last_width_ = width;
  std::fprintf(stream_, "\r%s", line.c_str());
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

}  // namespace lrfind::runtime
