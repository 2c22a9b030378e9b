// Faults, end to end: signals stop the job within 10 s and keep its steps; a rank that
// dies (kill -9) takes the job down within 30 s and leaves a readable <out>.partial;
// non-finite losses and determinism. Every wait is bounded so that no test can hang CI.

#include <dirent.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include <gtest/gtest.h>

#include "cli_util.h"
#include "runtime/results.h"

namespace lrfind {
namespace {

using namespace lrfind::testing;

// A sweep that runs for minutes unless stopped.
const char* const kLongSweep = "--num-training 500000 --early-stop-threshold none --max-lr 1e-3 --plot '' ";

// Pids of the processes whose command line mentions `marker` (the test's temp dir).
std::set<pid_t> processesMentioning(const std::string& marker) {
  std::set<pid_t> found;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return found;
  while (dirent* entry = ::readdir(proc)) {
    const pid_t pid = static_cast<pid_t>(std::atoi(entry->d_name));
    if (pid <= 0 || pid == ::getpid()) continue;
    std::string cmdline = slurp("/proc/" + std::string(entry->d_name) + "/cmdline");
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    if (cmdline.find(marker) != std::string::npos && cmdline.find("lrfind_dist") != std::string::npos) {
      found.insert(pid);
    }
  }
  ::closedir(proc);
  return found;
}

// The pid of MPI rank `rank` among the lrfind_dist processes of this test.
pid_t rankPid(const std::string& marker, int rank) {
  for (pid_t pid : processesMentioning(marker)) {
    std::string env = slurp("/proc/" + std::to_string(pid) + "/environ");
    std::replace(env.begin(), env.end(), '\0', '\n');
    if (env.find("\nOMPI_COMM_WORLD_RANK=" + std::to_string(rank) + "\n") != std::string::npos) return pid;
  }
  return -1;
}

// Whether `pid` has exited: gone, or a zombie (which holds no files or locks any more).
// An exiting process loses its command line before its files, so a scan by command
// line alone can miss one that still holds the results file's lock.
bool exited(pid_t pid) {
  const std::string stat = slurp("/proc/" + std::to_string(pid) + "/stat");
  const auto paren = stat.rfind(") ");
  if (paren == std::string::npos || paren + 2 >= stat.size()) return true;
  const char state = stat[paren + 2];
  if (state != 'Z' && state != 'X') return false;
  // A killed thread-group leader turns zombie while its other threads still exit (and
  // still hold the files): wait until it is the last one.
  int tasks = 0;
  if (DIR* dir = ::opendir(("/proc/" + std::to_string(pid) + "/task").c_str())) {
    while (dirent* entry = ::readdir(dir)) tasks += entry->d_name[0] != '.' ? 1 : 0;
    ::closedir(dir);
  }
  return tasks <= 1;
}

// Waits (at most `seconds`) until every process in `known`, and every lrfind_dist of
// this test, has exited.
bool allGone(const std::string& marker, std::set<pid_t> known, double seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  for (;;) {
    for (pid_t pid : processesMentioning(marker)) known.insert(pid);
    if (std::all_of(known.begin(), known.end(), exited)) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

// A signal to the job (the process itself, or mpirun) stops it within 10 s with exit
// code 128 + signal (mpirun: non-zero); the partial file holds every step, marked
// interrupted; the existing <out> is not touched.
void checkSignalStopsTheJob(int sig, const std::string& launcher) {
  TempDir dir;
  std::ofstream(dir.file("r.h5")) << "an earlier result";
  Job job(dir, std::string(kLongSweep) + "--force --out '" + dir.file("r.h5") + "'", launcher);
  ASSERT_TRUE(waitForSize(dir.file("r.h5.partial"), 40000)) << slurp(dir.file("stderr.txt"));
  const auto ranks = processesMentioning(dir.path().string());
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(::kill(job.pid(), sig), 0);
  const auto code = job.wait(10.0 * timeScale());
  ASSERT_TRUE(code.has_value()) << "still running 10 s after signal " << sig;
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (launcher.empty()) {
    EXPECT_EQ(*code, 128 + sig);
  } else {
    EXPECT_NE(*code, 0);
  }
  EXPECT_TRUE(allGone(dir.path().string(), ranks, 10.0 * timeScale() - seconds));
  const std::string err = slurp(dir.file("stderr.txt"));
  EXPECT_NE(err.find("lrfind_dist: interrupted"), std::string::npos) << err;
  const auto d = runtime::readResults(dir.file("r.h5.partial"));
  EXPECT_EQ(d.strings.at("stop_reason"), "interrupted");
  EXPECT_EQ(d.numbers.at("complete"), 0);
  EXPECT_GT(d.lr.size(), 0u);
  EXPECT_EQ(d.numbers.at("steps_completed"), static_cast<double>(d.lr.size())) << "every finished step is kept";
  EXPECT_EQ(slurp(dir.file("r.h5")), "an earlier result");
}

TEST(Faults, SigtermStopsOneProcessAndKeepsItsSteps) { checkSignalStopsTheJob(SIGTERM, ""); }
TEST(Faults, SigintStopsOneProcessAndKeepsItsSteps) { checkSignalStopsTheJob(SIGINT, ""); }
TEST(Faults, SigtermToMpirunStopsEveryRank) { checkSignalStopsTheJob(SIGTERM, mpirunBare(2)); }
TEST(Faults, SigintToMpirunStopsEveryRank) { checkSignalStopsTheJob(SIGINT, mpirunBare(2)); }

// One rank dies with SIGKILL at a known step (LRFIND_FAULT_INJECT=1:40:kill) or is
// killed from outside: the launcher exits non-zero, every process is gone within 30 s,
// and rank 0's partial file opens and holds the steps done (at most one lost).
void checkKilledRank(int np, bool from_outside) {
  TempDir dir;
  std::ofstream(dir.file("r.h5")) << "an earlier result";
  const int kill_step = 40;
  if (!from_outside) ::setenv("LRFIND_FAULT_INJECT", ("1:" + std::to_string(kill_step) + ":kill").c_str(), 1);
  Job job(dir, std::string(kLongSweep) + "--force --out '" + dir.file("r.h5") + "'", mpirunBare(np));
  ::unsetenv("LRFIND_FAULT_INJECT");
  ASSERT_TRUE(waitForSize(dir.file("r.h5.partial"), from_outside ? 40000 : 0)) << slurp(dir.file("stderr.txt"));
  const auto ranks = processesMentioning(dir.path().string());
  if (from_outside) {
    const pid_t victim = rankPid(dir.path().string(), 1);
    ASSERT_GT(victim, 0);
    ASSERT_EQ(::kill(victim, SIGKILL), 0);
  }
  const auto t0 = std::chrono::steady_clock::now();
  const auto code = job.wait(30.0 * timeScale());
  ASSERT_TRUE(code.has_value()) << "the launcher is still running 30 s after the kill";
  EXPECT_NE(*code, 0);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_TRUE(allGone(dir.path().string(), ranks, 30.0 * timeScale() - seconds)) << "a rank outlived the job";
  const auto d = runtime::readResults(dir.file("r.h5.partial"));
  EXPECT_EQ(d.numbers.at("complete"), 0);
  if (!from_outside) {
    // Rank 1 died before step 40: steps 0..39 are done, at most one may be lost.
    EXPECT_GE(static_cast<int64_t>(d.lr.size()), kill_step - 1);
  }
  // steps_completed is rewritten after each step's rows are flushed (from outside, the
  // steps done are known only through it: the file is locked while rank 0 writes).
  EXPECT_GE(d.lr.size(), 1u);
  EXPECT_GE(static_cast<double>(d.lr.size()), d.numbers.at("steps_completed"));
  EXPECT_LE(static_cast<double>(d.lr.size()), d.numbers.at("steps_completed") + 1);
  EXPECT_EQ(slurp(dir.file("r.h5")), "an earlier result");
}

TEST(Faults, RankKilledAtAKnownStepEndsTwoRanks) { checkKilledRank(2, false); }
TEST(Faults, RankKilledAtAKnownStepEndsFourRanks) { checkKilledRank(4, false); }
TEST(Faults, KillMinusNineFromOutsideEndsTwoRanks) { checkKilledRank(2, true); }
TEST(Faults, KillMinusNineFromOutsideEndsFourRanks) { checkKilledRank(4, true); }

// The same command and seed give bit-identical curves, run to run, at 1 and 2 ranks.
TEST(Determinism, SameSeedSameBits) {
  TempDir dir;
  for (const std::string& launcher : {std::string(), mpirun(2)}) {
    std::vector<double> first;
    for (int run = 0; run < 2; ++run) {
      const std::string out = "d" + std::to_string(run) + ".h5";
      const auto r = runCli(dir, "--seed 7 --num-training 60 --optimizer adam --plot '' --force --out " + out, launcher);
      ASSERT_EQ(r.code, 0) << r.err;
      const auto d = runtime::readResults(dir.file(out));
      if (run == 0) {
        first = d.loss_raw;
      } else {
        ASSERT_EQ(d.loss_raw.size(), first.size());
        for (std::size_t k = 0; k < first.size(); ++k) {
          EXPECT_EQ(std::memcmp(&d.loss_raw[k], &first[k], sizeof(double)), 0)
              << (launcher.empty() ? "1 process" : "2 ranks") << ", step " << k;
        }
      }
    }
  }
}

}  // namespace
}  // namespace lrfind
