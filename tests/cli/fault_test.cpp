// Faults, end to end: signals stop the job within 10 s and keep its steps; a rank that
// dies (kill -9) takes the job down within 30 s and leaves a readable <out>.partial; a
// full disk gives one line and keeps the steps flushed; non-finite losses and
// determinism. Every wait is bounded so that no test can hang CI.

#include <dirent.h>
#include <sys/mount.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <vector>

#include <gtest/gtest.h>

#include "cli_util.h"
#include "runtime/results.h"

namespace lrfind {
namespace {

using namespace lrfind::testing;

// A sweep that runs for minutes unless stopped.
const char* const kLongSweep = "--num-training 500000 --early-stop-threshold none --max-lr 1e-3 --plot '' ";

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
  const JobEnd end = waitForJobEnd(job, dir.path().string(), ranks, 30.0 * timeScale());
  ASSERT_TRUE(end.code.has_value()) << "the launcher is still running 30 s after the kill";
  EXPECT_NE(*end.code, 0);
  EXPECT_TRUE(end.all_gone) << "a rank outlived the job";
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

// A small tmpfs mounted for one test and unmounted when it ends, passed or not.
class SmallTmpfs {
 public:
  // Mounts `bytes` of tmpfs at `dir` (created); why() says why not when mounted() is false.
  SmallTmpfs(const std::string& dir, std::size_t bytes) : dir_(dir) {
    if (::geteuid() != 0) {
      why_ = "mounting a tmpfs needs root";
      return;
    }
    std::filesystem::create_directories(dir_);
    const std::string options = "size=" + std::to_string(bytes);
    if (::mount("tmpfs", dir_.c_str(), "tmpfs", 0, options.c_str()) != 0) {
      why_ = "mount -t tmpfs -o " + options + " " + dir_ + " failed: " + std::strerror(errno) +
             " (a container without CAP_SYS_ADMIN?)";
      return;
    }
    mounted_ = true;
  }
  ~SmallTmpfs() {
    if (mounted_ && ::umount2(dir_.c_str(), 0) != 0) ::umount2(dir_.c_str(), MNT_DETACH);
  }
  SmallTmpfs(const SmallTmpfs&) = delete;
  SmallTmpfs& operator=(const SmallTmpfs&) = delete;
  bool mounted() const { return mounted_; }
  const std::string& why() const { return why_; }

 private:
  std::string dir_;
  bool mounted_ = false;
  std::string why_;
};

std::vector<std::string> linesOf(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// --out on a file system that fills up during the sweep (a 200 KiB tmpfs; a step adds
// about 40 bytes to the results, so 20000 steps need about 800 KiB): exit code 1, one
// line that names the file and the OS error, no HDF5 error stack, and <out>.partial
// opens and holds every step flushed before, as many as the line says.
void checkDiskFull(const std::string& launcher) {
  TempDir dir;
  SmallTmpfs disk(dir.file("small"), 200 * 1024);
  if (!disk.mounted()) GTEST_SKIP() << disk.why();
  const std::string out = dir.file("small/r.h5");
  const double min_lr = 1e-7, max_lr = 1e-3;
  const int64_t num_training = 20000;
  const auto r = runCli(dir,
                        "--num-training " + std::to_string(num_training) + " --min-lr 1e-7 --max-lr 1e-3 "
                        "--batch-size 8 --early-stop-threshold none --plot '' --out '" + out + "'",
                        launcher);
  EXPECT_EQ(r.code, 1) << r.err;
  std::vector<std::string> errors;
  for (const auto& line : linesOf(r.err)) {
    if (line.rfind("lrfind_dist: error: ", 0) == 0) errors.push_back(line);
    EXPECT_EQ(line.find("HDF5-DIAG"), std::string::npos) << "an HDF5 error stack: " << line;
    EXPECT_EQ(line.find("#000:"), std::string::npos) << "an HDF5 error stack: " << line;
    EXPECT_EQ(line.find("warning"), std::string::npos) << line;
  }
  ASSERT_EQ(errors.size(), 1u) << r.err;
  const std::string& error = errors[0];
  EXPECT_NE(error.find("No space left on device"), std::string::npos) << error;
  EXPECT_NE(error.find(out + ".partial"), std::string::npos) << "the line names the file: " << error;
  EXPECT_LT(error.size(), 400u) << error;
  EXPECT_FALSE(std::filesystem::exists(out));

  const auto d = runtime::readResults(out + ".partial");
  EXPECT_EQ(d.numbers.at("complete"), 0);
  ASSERT_GE(d.lr.size(), 1u);
  EXPECT_LT(static_cast<int64_t>(d.lr.size()), num_training);
  EXPECT_EQ(d.numbers.at("steps_completed"), static_cast<double>(d.lr.size()));
  EXPECT_NE(error.find("after " + std::to_string(d.lr.size()) + " steps"), std::string::npos)
      << "the line and the file agree on the steps kept: " << error;
  // Every row kept is a real step, none half written: the schedule computed here, and
  // losses that are there.
  ASSERT_EQ(d.loss_raw.size(), d.lr.size());
  ASSERT_EQ(d.loss_per_rank.size(), d.lr.size());
  for (std::size_t k = 0; k < d.lr.size(); ++k) {
    const double expected = min_lr * std::pow(max_lr / min_lr, double(k) / double(num_training - 1));
    ASSERT_NEAR(d.lr[k], expected, 1e-9 * expected) << "step " << k;
    ASSERT_GT(d.loss_raw[k], 0.0) << "step " << k;
    ASSERT_TRUE(std::isfinite(d.loss_raw[k])) << "step " << k;
  }
}

TEST(Faults, DiskFullGivesOneLineAndKeepsTheFlushedSteps) { checkDiskFull(""); }
TEST(Faults, DiskFullUnderMpirunGivesOneLine) { checkDiskFull(mpirun(2)); }

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
