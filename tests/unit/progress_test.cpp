#include "runtime/progress.h"

#include <cstdio>
#include <string>

#include <gtest/gtest.h>

namespace lrfind::runtime {
namespace {

std::string drive(bool interactive, int64_t steps) {
  std::FILE* f = std::tmpfile();
  ConsoleProgress p(f, interactive);
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

TEST(ConsoleProgress, TerminalGetsOneRedrawnBar) {
  const std::string text = drive(true, 50);
  EXPECT_NE(text.find('\r'), std::string::npos);
  EXPECT_NE(text.find("50/50"), std::string::npos) << "the last step is always drawn";
  EXPECT_NE(text.find("[##############################]"), std::string::npos);
  EXPECT_EQ(text.back(), '\n');
  EXPECT_EQ(text.find("] step "), std::string::npos) << "no log lines on a terminal";
}

}  // namespace
}  // namespace lrfind::runtime
