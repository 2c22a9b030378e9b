#pragma once
// String helpers that every layer uses.

#include <sstream>
#include <string>

namespace lrfind {

// Concatenates the arguments with operator<<.
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

}  // namespace lrfind
