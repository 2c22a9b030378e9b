// main() for GoogleTest binaries run under mpirun (as nccl-tests do): initializes MPI,
// prints progress on rank 0 only, prints every rank's failures with its rank and host,
// and makes every rank agree on pass/fail, so that a failure on any rank fails the whole
// job (and ctest).

#include <mpi.h>

#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "comm/mpi_environment.h"

namespace {

// "node07" for "node07.cluster.example": the short host name, as nccl-tests prints it.
std::string shortHostName() {
  char name[MPI_MAX_PROCESSOR_NAME] = {0};
  int len = 0;
  if (MPI_Get_processor_name(name, &len) != MPI_SUCCESS) return "unknown-host";
  std::string host(name, static_cast<std::size_t>(len));
  return host.substr(0, host.find('.'));
}

// The printer for ranks other than 0: only failures, every line prefixed with
// "[rank R host] ", each report written at once so that lines from several ranks
// interleave whole. Success, skips and progress stay on rank 0's default printer.
class FailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit FailurePrinter(std::string prefix) : prefix_(std::move(prefix)) {}

  void OnTestPartResult(const ::testing::TestPartResult& result) override {
    if (!result.failed()) return;
    std::ostringstream text;
    const char* file = result.file_name();
    if (file != nullptr) {
      const char* slash = std::strrchr(file, '/');
      text << (slash != nullptr ? slash + 1 : file);
      if (result.line_number() >= 0) text << ":" << result.line_number();
      text << ": ";
    }
    text << "Failure\n" << result.message();
    print(text.str());
  }

  void OnTestEnd(const ::testing::TestInfo& info) override {
    if (!info.result()->Failed()) return;
    print(std::string("[  FAILED  ] ") + info.test_suite_name() + "." + info.name() + " (" +
          std::to_string(info.result()->elapsed_time()) + " ms)");
  }

  void OnTestProgramEnd(const ::testing::UnitTest& unit) override {
    if (unit.Passed()) return;
    print(std::to_string(unit.failed_test_count()) + " test(s) FAILED on this rank");
  }

 private:
  void print(const std::string& text) const {
    std::string out;
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) out += prefix_ + line + "\n";
    std::fwrite(out.data(), 1, out.size(), stdout);
    std::fflush(stdout);
  }

  std::string prefix_;
};

}  // namespace

int main(int argc, char** argv) {
  lrfind::comm::MpiEnvironment mpi;
  ::testing::InitGoogleTest(&argc, argv);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (rank != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new FailurePrinter("[rank " + std::to_string(rank) + " " + shortHostName() + "] "));
  }
  std::fflush(stdout);
  const int local = RUN_ALL_TESTS();
  std::fflush(stdout);
  // Every rank's verdict reaches rank 0, which names the failed ranks; all return the same.
  std::vector<int> verdicts(rank == 0 ? static_cast<std::size_t>(size) : 1);
  MPI_Gather(&local, 1, MPI_INT, verdicts.data(), 1, MPI_INT, 0, MPI_COMM_WORLD);
  int global = 0;
  MPI_Allreduce(&local, &global, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (rank == 0) {
    std::string failed;
    for (int r = 0; r < size; ++r) {
      if (verdicts[static_cast<std::size_t>(r)] != 0) failed += (failed.empty() ? "" : ", ") + std::to_string(r);
    }
    if (global == 0) {
      std::printf("PASSED on all %d ranks\n", size);
    } else {
      // gtest's summary above is rank 0's alone; other ranks' failures carry their prefix.
      std::printf("FAILED on rank(s) %s of %d (other ranks' failures are the lines starting [rank R host])\n",
                  failed.c_str(), size);
    }
    std::fflush(stdout);
  }
  return global;
}
