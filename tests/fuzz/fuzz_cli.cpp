// Fuzz target: lrfind_dist's command line and TOML config parsing. The input is one
// argument per line; a line "@config" starts a TOML config file (every line after it),
// which the harness writes and passes with --config. Runs what lrfind_dist runs before
// it touches any file or rank: parseCommandLine, then runtime::validate. Contract
// checked: parseCommandLine never throws, it either runs or exits with 0 (help,
// version, write-config) or 2 and one error line; validate throws only InputError.

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "common/error.h"
#include "fuzz_util.h"
#include "launch/cli.h"
#include "runtime/app.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> args = {"lrfind_dist"};
  std::string config;
  bool in_config = false;
  size_t start = 0;
  while (start <= text.size() && args.size() < 64) {
    const size_t end = std::min(text.find('\n', start), text.size());
    const std::string line = text.substr(start, end - start);
    if (in_config) {
      config += line + "\n";
    } else if (line == "@config") {
      in_config = true;
    } else if (line != "--version") {  // slow (asks the CUDA driver), and tested elsewhere
      args.push_back(line);
    }
    start = end + 1;
  }
  if (in_config) {
    const std::string path = lrfind::fuzz::scratchPath(".toml");
    std::ofstream(path, std::ios::trunc) << config;
    args.push_back("--config");
    args.push_back(path);
  }
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());

  lrfind::runtime::RunConfig c;
  const auto outcome = lrfind::launch::parseCommandLine(static_cast<int>(argv.size()), argv.data(), c);
  if (!outcome.run) {
    if (outcome.exit_code != 0 && outcome.exit_code != 2) std::abort();
    if (outcome.exit_code == 2 && outcome.err.empty()) std::abort();
    return 0;
  }
  try {
    lrfind::runtime::validate(c);
  } catch (const lrfind::InputError&) {
  }
  return 0;
}
