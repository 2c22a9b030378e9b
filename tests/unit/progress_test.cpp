#include "runtime/progress.h"

// The console progress compiles without HDF5: progress.h reaches no <hdf5.h>.
#ifdef H5_VERS_MAJOR
#error "runtime/progress.h pulls in <hdf5.h>"
#endif

#include <chrono>
#include <cmath>
#include <cstdio>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "runtime/format.h"

namespace lrfind::runtime {
namespace {

using Clock = ConsoleProgress::Clock;

// Drives a sweep of `steps` steps. With `step_time`, the clock advances by it at every
// reading (one at the start, one per step), so that step k ends at (k+1) * step_time;
// without, the real clock runs.
std::string drive(bool interactive, int64_t steps, std::optional<std::chrono::milliseconds> step_time = {}) {
  std::FILE* f = std::tmpfile();
  Clock::time_point fake{};
  auto clock = [&]() -> Clock::time_point {
    if (!step_time) return Clock::now();
    const auto now = fake;
    fake += *step_time;
    return now;
  };
  ConsoleProgress p(f, interactive, clock);
  finder::SweepOptions o;
  o.num_training = steps;
  p.onStart(o, 2);
  finder::StepRecord r;
  for (int64_t k = 0; k < steps; ++k) {
    r.step = k;
    r.lr = 1e-3;
    r.loss = 2.5;
    p.onStep(r);
  }
  finder::SweepResult res;
  res.lr.assign(static_cast<std::size_t>(steps), 1e-3);
  res.stop_reason = finder::StopReason::kCompleted;
  p.onEnd(res);
  std::rewind(f);
  std::string text;
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) text.append(buf, n);
  std::fclose(f);
  return text;
}

// The redraws of a bar, one string each.
std::vector<std::string> redraws(const std::string& text) {
  std::vector<std::string> out;
  for (std::size_t at = text.find('\r'); at != std::string::npos;) {
    const std::size_t next = text.find_first_of("\r\n", at + 1);
    out.push_back(text.substr(at + 1, next == std::string::npos ? std::string::npos : next - at - 1));
    at = next != std::string::npos && text[next] == '\r' ? next : std::string::npos;
  }
  return out;
}

std::string lineWith(const std::string& text, const std::string& what) {
  const auto at = text.find(what);
  if (at == std::string::npos) return "";
  const auto begin = text.find_last_of("\r\n", at);
  const auto end = text.find_first_of("\r\n", at);
  return text.substr(begin == std::string::npos ? 0 : begin + 1, end == std::string::npos ? end : end - begin - 1);
}

TEST(ConsoleProgress, BatchLogsGetTimestampedLinesEveryTenth) {
  const std::string text = drive(false, 50);
  EXPECT_NE(text.find("lrfind: sweep of 50 steps"), std::string::npos) << text;
  EXPECT_NE(text.find("2 rank(s)"), std::string::npos);
  int step_lines = 0;
  for (std::size_t at = text.find("] step "); at != std::string::npos; at = text.find("] step ", at + 1)) ++step_lines;
  EXPECT_EQ(step_lines, 11) << "step 1, then every 5th of 50:\n" << text;
  EXPECT_EQ(text.find('\r'), std::string::npos) << "no carriage returns in a log file";
  EXPECT_NE(text.find("sweep ended after 50 steps: completed"), std::string::npos);
  EXPECT_EQ(text[0], '[') << "lines start with a timestamp";
}

// 2 s a step: after 5 of 50 steps 10 s have passed and 45 * 2 s = 90 s are left.
TEST(ConsoleProgress, BatchLogsShowTheRateElapsedAndTimeLeft) {
  const std::string text = drive(false, 50, std::chrono::seconds(2));
  EXPECT_NE(lineWith(text, "step 5/50 ").find("(2 s/step, 00:10 elapsed, ETA 01:30)"), std::string::npos) << text;
  EXPECT_NE(lineWith(text, "step 50/50 ").find("(2 s/step, 01:40 elapsed, ETA 00:00)"), std::string::npos) << text;
  const std::string slow = drive(false, 100, std::chrono::minutes(1));
  EXPECT_NE(lineWith(slow, "step 10/100 ").find("(60 s/step, 10:00 elapsed, ETA 1:30:00)"), std::string::npos)
      << slow;
}

TEST(ConsoleProgress, TerminalGetsOneRedrawnBar) {
  const std::string text = drive(true, 50);
  EXPECT_NE(text.find('\r'), std::string::npos);
  EXPECT_NE(text.find("50/50"), std::string::npos) << "the last step is always drawn";
  EXPECT_TRUE(std::regex_search(lineWith(text, "50/50"), std::regex(R"(^\[#{10,30}\] 50/50 )"))) << text;
  EXPECT_EQ(text.back(), '\n');
  EXPECT_EQ(text.find("] step "), std::string::npos) << "no log lines on a terminal";
}

// tqdm's "elapsed<left, rate": 0.3 s a step, at 40 of 100 steps 12 s have passed and
// 60 * 0.3 s = 18 s are left.
TEST(ConsoleProgress, TerminalBarShowsElapsedTimeLeftAndRate) {
  const std::string text = drive(true, 100, std::chrono::milliseconds(300));
  const auto draws = redraws(text);
  ASSERT_EQ(draws.size(), 100u) << "0.3 s apart, every step is drawn";
  const std::regex layout(R"(^\[[#.]{10,30}\] +\d+/100 lr \S+ +loss \S+ +\d\d:\d\d<\d\d:\d\d, [0-9.e+-]+ s/step *$)");
  for (const auto& d : draws) {
    EXPECT_TRUE(std::regex_search(d, layout)) << "[" << d << "]";
    EXPECT_LE(d.size(), 79u) << "one line of an 80-column terminal: [" << d << "]";
  }
  EXPECT_NE(draws[39].find(" 40/100 "), std::string::npos) << draws[39];
  EXPECT_NE(draws[39].find("00:12<00:18, 0.3 s/step"), std::string::npos) << draws[39];
  EXPECT_NE(draws[99].find("00:30<00:00, 0.3 s/step"), std::string::npos) << draws[99];
  EXPECT_NE(draws[99].find("loss 2.5"), std::string::npos) << draws[99];
  EXPECT_EQ(text.find('\n'), text.size() - 1) << "one line, ended once";
}

TEST(ConsoleProgress, DurationsReadLikeTqdm) {
  EXPECT_EQ(formatDuration(0), "00:00");
  EXPECT_EQ(formatDuration(12.4), "00:12");
  EXPECT_EQ(formatDuration(59.6), "01:00");
  EXPECT_EQ(formatDuration(3599), "59:59");
  EXPECT_EQ(formatDuration(3723), "1:02:03");
  EXPECT_EQ(formatDuration(-1), "?");
  EXPECT_EQ(formatDuration(NAN), "?");
}

}  // namespace
}  // namespace lrfind::runtime
