// No hangs, end to end: a rank that stalls (SIGSTOP, from inside at a known step or at
// start-up, or from outside) ends the whole job by itself within --comm-timeout plus a
// few seconds, with exit code 3, one error line naming the rank and the step, a
// readable <out>.partial marked stop_reason="timeout", and no process left behind. The
// stall warning names the rank once, and stays quiet in a healthy run. Every wait in
// these tests is bounded.

#include <csignal>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "cli_util.h"
#include "runtime/results.h"

namespace lrfind {
namespace {

using namespace lrfind::testing;

const char* const kLongSweep = "--num-training 500000 --early-stop-threshold none --max-lr 1e-3 --plot '' ";
constexpr int kTimeoutS = 5;
// The bound of the issue: --comm-timeout + 10 s for every rank to be gone.
constexpr double kEndWithinS = kTimeoutS + 10;

struct Stall {
  int np = 2;
  std::string inject;  // LRFIND_FAULT_INJECT, or "" to SIGSTOP rank 1 from outside
  std::string expected;  // a piece of the error line
  bool steps_recorded = true;
};

void checkStallEndsTheJob(const Stall& stall) {
  TempDir dir;
  std::ofstream(dir.file("r.h5")) << "an earlier result";
  if (!stall.inject.empty()) ::setenv("LRFIND_FAULT_INJECT", stall.inject.c_str(), 1);
  Job job(dir,
          std::string(kLongSweep) + "--comm-timeout " + std::to_string(kTimeoutS) + " --force --out '" +
              dir.file("r.h5") + "'",
          mpirunBare(stall.np));
  ::unsetenv("LRFIND_FAULT_INJECT");
  const std::string marker = dir.path().string();
  if (stall.inject.empty()) {
    ASSERT_TRUE(waitForSize(dir.file("r.h5.partial"), 20000)) << slurp(dir.file("stderr.txt"));
    const pid_t victim = rankPid(marker, 1);
    ASSERT_GT(victim, 0);
    ASSERT_EQ(::kill(victim, SIGSTOP), 0);
  } else if (stall.steps_recorded) {
    ASSERT_TRUE(waitForSize(dir.file("r.h5.partial"), 0)) << slurp(dir.file("stderr.txt"));
  }
  const auto ranks = processesMentioning(marker);
  const auto t0 = std::chrono::steady_clock::now();
  // Start-up (LibTorch, data) comes before the deadline starts counting at start-up.
  const auto code = job.wait((kEndWithinS + (stall.steps_recorded ? 0 : 20)) * timeScale());
  ASSERT_TRUE(code.has_value()) << "the job is still running; stderr: " << slurp(dir.file("stderr.txt"));
  EXPECT_EQ(*code, 3) << slurp(dir.file("stderr.txt"));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // A stopped rank must be gone too (killed by the launcher once the others ended).
  EXPECT_TRUE(allGone(marker, ranks, std::max(1.0, kEndWithinS * timeScale() - seconds))) << "a rank outlived the job";

  const std::string err = slurp(dir.file("stderr.txt"));
  const auto errors = linesStartingWith(err, "lrfind_dist: error: ");
  ASSERT_EQ(errors.size(), 1u) << err;
  EXPECT_NE(errors[0].find(stall.expected), std::string::npos) << errors[0];
  EXPECT_NE(errors[0].find("did not answer within " + std::to_string(kTimeoutS) + " s (--comm-timeout)"),
            std::string::npos)
      << errors[0];
  EXPECT_EQ(slurp(dir.file("r.h5")), "an earlier result");
  if (!stall.steps_recorded) return;
  EXPECT_NE(errors[0].find("the steps so far are in " + dir.file("r.h5.partial")), std::string::npos) << errors[0];
  const auto d = runtime::readResults(dir.file("r.h5.partial"));
  EXPECT_EQ(d.strings.at("stop_reason"), "timeout");
  EXPECT_EQ(d.numbers.at("complete"), 0);
  EXPECT_GE(d.lr.size(), 1u);
}

TEST(Timeouts, RankStalledAtAKnownStepEndsTwoRanks) { checkStallEndsTheJob({2, "1:30:stall", "step 30: rank 1 ("}); }
TEST(Timeouts, RankStalledAtAKnownStepEndsFourRanks) { checkStallEndsTheJob({4, "3:30:stall", "step 30: rank 3 ("}); }
TEST(Timeouts, SigstopFromOutsideEndsTwoRanks) { checkStallEndsTheJob({2, "", ": rank 1 ("}); }
TEST(Timeouts, SigstopFromOutsideEndsFourRanks) { checkStallEndsTheJob({4, "", ": rank 1 ("}); }
TEST(Timeouts, RankStalledAtStartUpEndsTwoRanks) {
  checkStallEndsTheJob({2, "1:start:stall", "start-up: rank 1 (", false});
}
TEST(Timeouts, RankStalledAtStartUpEndsFourRanks) {
  checkStallEndsTheJob({4, "2:start:stall", "start-up: rank 2 (", false});
}

// Rank 0 names the stalled rank once, well before the deadline.
TEST(Timeouts, StallWarningNamesTheRankOnce) {
  TempDir dir;
  ::setenv("LRFIND_FAULT_INJECT", "1:20:stall", 1);
  const auto r = runCli(dir, std::string(kLongSweep) + "--comm-timeout 6 --stall-warning 2 --out r.h5", mpirun(2));
  ::unsetenv("LRFIND_FAULT_INJECT");
  EXPECT_EQ(r.code, 3) << r.err;
  const auto warnings = linesStartingWith(r.err, "lrfind_dist: warning: ");
  ASSERT_EQ(warnings.size(), 1u) << r.err;
  EXPECT_EQ(warnings[0].rfind("lrfind_dist: warning: step 20: waiting 2 s for rank 1 (", 0), 0u) << warnings[0];
  EXPECT_NE(warnings[0].find(", pid "), std::string::npos) << warnings[0];
}

TEST(Timeouts, HealthyRunHasNoStallWarning) {
  TempDir dir;
  const auto r = runCli(dir, "--num-training 200 --stall-warning 5 --out r.h5", mpirun(2));
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err.find("waiting"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("did not answer"), std::string::npos) << r.err;
}

TEST(Timeouts, StallWarningAndTimeoutAreFlagsWithChecks) {
  TempDir dir;
  auto r = runCli(dir, "--stall-warning -1");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--stall-warning must be >= 0"), std::string::npos) << r.err;
  r = runCli(dir, "--help");
  EXPECT_NE(r.out.find("--stall-warning"), std::string::npos);
  EXPECT_NE(r.out.find("exit code 3"), std::string::npos);
}

}  // namespace
}  // namespace lrfind
