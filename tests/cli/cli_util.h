#pragma once
// Helpers for the end-to-end tests of the lrfind_dist binary: run it (in the foreground
// or as a background job to signal or kill), read what it wrote, make small inputs.

#include <dirent.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <torch/script.h>
#include <torch/torch.h>

#include "unit/test_util.h"

extern char** environ;

namespace lrfind::testing {

struct CliResult {
  int code = -1;
  std::string out, err;
};

inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs lrfind_dist with `args` in `dir`; `launcher` goes in front (e.g. "mpirun -np 2").
inline CliResult runCli(const TempDir& dir, const std::string& args, const std::string& launcher = "") {
  const std::string out = dir.file("stdout.txt"), err = dir.file("stderr.txt");
  const std::string cmd = "cd '" + dir.path().string() + "' && " + launcher + " '" LRFIND_DIST_PATH "' --threads 1 " +
                          args + " >'" + out + "' 2>'" + err + "'";
  const int status = std::system(cmd.c_str());
  CliResult r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

inline int lines(const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }

// A TorchScript MLP with `in` inputs and `classes` outputs, saved like Python would.
inline void saveScriptModel(const std::string& path, int64_t in, int64_t classes) {
  torch::manual_seed(0);
  torch::jit::Module m("Net");
  m.register_parameter("w1", (torch::randn({in, 32}) * 0.2).set_requires_grad(true), false);
  m.register_parameter("b1", torch::zeros({32}).set_requires_grad(true), false);
  m.register_parameter("w2", (torch::randn({32, classes}) * 0.2).set_requires_grad(true), false);
  m.define(R"(
def forward(self, x):
    return torch.matmul(torch.relu(torch.matmul(x, self.w1) + self.b1), self.w2)
)");
  m.save(path);
}

// mpirun as CI runs it: as root, oversubscribed on a 2-core machine. For jobs the test
// signals itself (no `timeout` wrapper in between).
inline std::string mpirunBare(int np) {
  ::setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  ::setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  ::setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 1);
  return "'" LRFIND_MPIEXEC "' -np " + std::to_string(np);
}

// The same, bounded by `timeout`, for jobs run to their end.
inline std::string mpirun(int np) { return "timeout 120 " + mpirunBare(np); }

// lrfind_dist running in the background (no shell in between, so SIGINT is not ignored
// as it is for a shell's background jobs). The destructor kills what is left.
class Job {
 public:
  Job(const TempDir& dir, const std::string& args, const std::string& launcher = "") {
    const std::string cmd = "cd '" + dir.path().string() + "' && exec " + launcher + " '" LRFIND_DIST_PATH
                            "' --threads 1 " + args + " >stdout.txt 2>stderr.txt";
    const char* argv[] = {"/bin/sh", "-c", cmd.c_str(), nullptr};
    EXPECT_EQ(posix_spawn(&pid_, "/bin/sh", nullptr, nullptr, const_cast<char**>(argv), environ), 0);
  }
  ~Job() {
    if (!code_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }

  // The exit code (128 + signal when a signal ended it), or nullopt if it still runs
  // after `seconds`.
  std::optional<int> wait(double seconds) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (!code_) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      } else if (std::chrono::steady_clock::now() > deadline) {
        return std::nullopt;
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
    return code_;
  }

 private:
  pid_t pid_ = -1;
  std::optional<int> code_;
};

// Wall-time bounds in these tests are multiplied by LRFIND_TEST_TIME_SCALE (at least 1).
// tests/run.sh --sanitize sets it: sanitized binaries start and run several times
// slower, and there the bounds are not what is being checked.
inline double timeScale() {
  const char* text = std::getenv("LRFIND_TEST_TIME_SCALE");
  const double scale = text != nullptr ? std::atof(text) : 1.0;
  return scale > 1.0 ? scale : 1.0;
}

// Waits (at most 60 s) until `path` is larger than `bytes`: the results file grows with
// every step it flushes. False on timeout.
inline bool waitForSize(const std::string& path, std::uintmax_t bytes) {
  for (int i = 0; i < 600 * timeScale(); ++i) {
    std::error_code ec;
    if (std::filesystem::file_size(path, ec) > bytes && !ec) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

// The lines of `text` that start with `prefix`.
inline std::vector<std::string> linesStartingWith(const std::string& text, const std::string& prefix) {
  std::vector<std::string> found;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(prefix, 0) == 0) found.push_back(line);
  }
  return found;
}

// Pids of the processes whose command line mentions `marker` (the test's temp dir).
inline std::set<pid_t> processesMentioning(const std::string& marker) {
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
inline pid_t rankPid(const std::string& marker, int rank) {
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
inline bool exited(pid_t pid) {
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
inline bool allGone(const std::string& marker, std::set<pid_t> known, double seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  for (;;) {
    for (pid_t pid : processesMentioning(marker)) known.insert(pid);
    if (std::all_of(known.begin(), known.end(), exited)) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

// How a job that lost a rank ended: its exit code (nullopt if the launcher still ran
// after `seconds`), and whether every process of it was gone within the same bound.
struct JobEnd {
  std::optional<int> code;
  bool all_gone = false;
};

inline JobEnd waitForJobEnd(Job& job, const std::string& marker, const std::set<pid_t>& ranks, double seconds) {
  const auto t0 = std::chrono::steady_clock::now();
  JobEnd end;
  end.code = job.wait(seconds);
  if (!end.code) return end;
  const double spent = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  end.all_gone = allGone(marker, ranks, std::max(1.0, seconds - spent));
  return end;
}

}  // namespace lrfind::testing
