#pragma once
// The lrfind_dist command line: every flag, its help text and its default, parsed into
// a runtime::RunConfig. Separate from main() so that tests and the fuzzer can parse
// without running anything.

#include <string>

#include "runtime/app.h"

namespace lrfind::launch {

struct CliOutcome {
  bool run = false;   // true: `config` is ready for runtime::run()
  int exit_code = 0;  // otherwise: exit with this (0 after --help/--version, 2 for bad flags)
  std::string out;    // what to print on stdout (help, version)
  std::string err;    // what to print on stderr (one error line)
};

// Never throws for any argv; prints nothing.
CliOutcome parseCommandLine(int argc, const char* const* argv, runtime::RunConfig& config);

}  // namespace lrfind::launch
