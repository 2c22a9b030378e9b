#pragma once
// LibTorch's and the TorchScript interpreter's messages span many lines (backtraces,
// the failing source line); a user-facing error is one.

#include <sstream>
#include <string>

namespace lrfind::runtime {

// The line of a multi-line message that says what went wrong: the last "...Error: ..."
// line if there is one, else the first non-blank line.
inline std::string oneLine(const std::string& text) {
  std::string best, first;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    const auto start = line.find_first_not_of(" \t");
    if (start == std::string::npos) continue;
    line = line.substr(start);
    if (first.empty()) first = line;
    if (line.find("Error: ") != std::string::npos) best = line;
  }
  return best.empty() ? first : best;
}

}  // namespace lrfind::runtime
