// lrfind_dist: the LR range test from the command line. Parses flags into a
// runtime::RunConfig (launch/cli.cpp) and runs it; see --help.

#include <cstdio>
#include <exception>
#include <memory>

#include "comm/mpi_environment.h"
#include "launch/cli.h"
#include "runtime/app.h"
#include "runtime/world.h"

int main(int argc, char** argv) {
  lrfind::runtime::RunConfig config;
  const auto parsed = lrfind::launch::parseCommandLine(argc, argv, config);
  if (!parsed.run) {
    // Every rank parses the same flags: under a launcher, rank 0 speaks for all. A rank
    // that fails must not exit before rank 0 has printed (the launcher would end the
    // job, rank 0 with it), so the ranks meet in MPI_Finalize first, as runtime::run()
    // does for the errors it reports.
    const auto launcher = lrfind::runtime::detectLauncher();
    std::unique_ptr<lrfind::comm::MpiEnvironment> mpi;
    if (launcher.size > 1 && parsed.exit_code != 0) {
      try {
        mpi = std::make_unique<lrfind::comm::MpiEnvironment>();
      } catch (const std::exception&) {
        // No MPI to meet in: every rank prints, rather than none.
      }
    }
    if (launcher.rank <= 0 || (launcher.size > 1 && parsed.exit_code != 0 && !mpi)) {
      std::fputs(parsed.out.c_str(), stdout);
      std::fputs(parsed.err.c_str(), stderr);
      std::fflush(stdout);
      std::fflush(stderr);
    }
    mpi.reset();
    return parsed.exit_code;
  }
  return lrfind::runtime::run(config);
}
