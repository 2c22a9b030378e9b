// lrfind_dist: the LR range test from the command line. Parses flags into a
// runtime::RunConfig (launch/cli.cpp) and runs it; see --help.

#include <cstdio>

#include "launch/cli.h"
#include "runtime/app.h"
#include "runtime/world.h"

int main(int argc, char** argv) {
  lrfind::runtime::RunConfig config;
  const auto parsed = lrfind::launch::parseCommandLine(argc, argv, config);
  if (!parsed.run) {
    // Every rank parses the same flags: under a launcher, rank 0 speaks for all.
    if (lrfind::runtime::detectLauncher().rank <= 0) {
      std::fputs(parsed.out.c_str(), stdout);
      std::fputs(parsed.err.c_str(), stderr);
    }
    return parsed.exit_code;
  }
  return lrfind::runtime::run(config);
}
