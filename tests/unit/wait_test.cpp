// comm/wait.h: the one bounded wait (links lrfind_comm only).

#include "comm/wait.h"

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace lrfind::comm {
namespace {

using std::chrono::milliseconds;

TEST(BoundedWait, ReturnsAsSoonAsDone) {
  int polls = 0;
  WaitPolicy policy;
  boundedWait([&] { return ++polls >= 3; }, policy, "", [] { return std::string("nobody"); });
  EXPECT_EQ(polls, 3);
}

TEST(BoundedWait, TimesOutWithTheLabelTheRankAndTheOption) {
  WaitPolicy policy;
  policy.timeout = milliseconds(200);
  policy.timeout_option = "--comm-timeout";
  const auto t0 = std::chrono::steady_clock::now();
  try {
    boundedWait([] { return false; }, policy, "step 7", [] { return std::string("rank 3 (node07, pid 12)"); });
    FAIL() << "expected a timeout";
  } catch (const CommTimeout& e) {
    EXPECT_STREQ(e.what(), "step 7: rank 3 (node07, pid 12) did not answer within 0.2 s (--comm-timeout)");
  }
  const auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(waited, milliseconds(200));
  EXPECT_LT(waited, milliseconds(2000));
}

TEST(BoundedWait, WarnsOnceAboutAStall) {
  WaitPolicy policy;
  policy.timeout = milliseconds(400);
  policy.stall_warning = milliseconds(100);
  std::vector<std::string> warnings;
  policy.on_stall = [&](const std::string& w) { warnings.push_back(w); };
  EXPECT_THROW(boundedWait([] { return false; }, policy, "step 2", [] { return std::string("rank 1"); }), CommTimeout);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_EQ(warnings[0], "step 2: waiting 0.1 s for rank 1");
}

TEST(BoundedWait, NoWarningWhenTurnedOffOrWhenDoneInTime) {
  WaitPolicy policy;
  policy.stall_warning = milliseconds(0);
  int calls = 0;
  policy.on_stall = [&](const std::string&) { ++calls; };
  const auto start = std::chrono::steady_clock::now();
  boundedWait([&] { return std::chrono::steady_clock::now() - start > milliseconds(50); }, policy, "",
              [] { return std::string(); });
  policy.stall_warning = milliseconds(10000);
  boundedWait([] { return true; }, policy, "", [] { return std::string(); });
  EXPECT_EQ(calls, 0);
}

// Past the first milliseconds a waiting rank sleeps: it polls far less than it would spin.
TEST(BoundedWait, BacksOffInsteadOfSpinning) {
  WaitPolicy policy;
  policy.timeout = milliseconds(600);
  int polls = 0;
  EXPECT_THROW(boundedWait([&] { return ++polls < 0; }, policy, "", [] { return std::string(); }), CommTimeout);
  // 20 ms of spinning may poll many times; the remaining 580 ms at most one poll per
  // 50 us..2 ms pause, i.e. a few hundred.
  const auto t0 = std::chrono::steady_clock::now();
  int late_polls = 0;
  policy.timeout = milliseconds(300);
  EXPECT_THROW(boundedWait(
                   [&] {
                     if (std::chrono::steady_clock::now() - t0 > milliseconds(100)) ++late_polls;
                     return false;
                   },
                   policy, "", [] { return std::string(); }),
               CommTimeout);
  EXPECT_LT(late_polls, 1000) << "polls between 100 and 300 ms into the wait";
}

TEST(BoundedWait, ABackendErrorPassesThrough) {
  WaitPolicy policy;
  EXPECT_THROW(boundedWait([]() -> bool { throw CommError("MPI_Test failed"); }, policy, "", [] { return std::string(); }),
               CommError);
}

TEST(DescribeRanks, NumbersAndWhereTheyRun) {
  EXPECT_EQ(describeRanks({3}, {}), "rank 3");
  EXPECT_EQ(describeRanks({1}, {"a, pid 1", "b, pid 2"}), "rank 1 (b, pid 2)");
  EXPECT_EQ(describeRanks({0, 1}, {"a, pid 1", "b, pid 2"}), "ranks 0, 1 (a, pid 1; b, pid 2)");
}

}  // namespace
}  // namespace lrfind::comm
