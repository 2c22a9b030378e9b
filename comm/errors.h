#pragma once
// Error types shared by every layer of lrfind (comm is the lowest layer, so they live
// here). Two tiers, as in gloo: LRFIND_CHECK for bad input and broken invariants, and
// typed exceptions a caller can catch and report.

#include <sstream>
#include <stdexcept>
#include <string>

namespace lrfind {

// Base of every lrfind exception. what() is one line meant for a user.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The user gave something unusable: a flag value, a file, a dataset. Exit code 2.
class InputError : public Error {
 public:
  using Error::Error;
};

// Reading or writing a file failed.
class IoError : public Error {
 public:
  using Error::Error;
};

// A collective failed, or another rank reported a failure.
class CommError : public Error {
 public:
  using Error::Error;
};

// Marks an exception that every rank throws with the same message after the ranks
// agreed on a failure (setup checks, a failed step): one rank's report is enough.
class AgreedFailure {
 public:
  virtual ~AgreedFailure() = default;
};

// Agreed<InputError>, Agreed<CommError>, ...: catchable as the base type.
template <typename Base>
class Agreed : public Base, public AgreedFailure {
 public:
  using Base::Base;
};

inline bool isAgreed(const std::exception& e) { return dynamic_cast<const AgreedFailure*>(&e) != nullptr; }

namespace detail {
inline void appendAll(std::ostringstream&) {}
template <typename T, typename... Rest>
void appendAll(std::ostringstream& os, const T& first, const Rest&... rest) {
  os << first;
  appendAll(os, rest...);
}
}  // namespace detail

// Concatenates the arguments with operator<<.
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  detail::appendAll(os, args...);
  return os.str();
}

// The line of a multi-line message (LibTorch, the TorchScript interpreter) that says
// what went wrong: the last "...Error: ..." line if there is one, else the first line.
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

}  // namespace lrfind

// Throws lrfind::Error with file:line, the failed condition and the message.
#define LRFIND_CHECK(cond, ...)                                                    \
  do {                                                                             \
    if (!(cond)) {                                                                 \
      throw ::lrfind::Error(::lrfind::concat(__FILE__, ":", __LINE__, ": check `", \
                                             #cond, "` failed: ", __VA_ARGS__));   \
    }                                                                              \
  } while (0)

// Throws lrfind::InputError with the message only: for user-facing validation.
#define LRFIND_INPUT_CHECK(cond, ...)                               \
  do {                                                              \
    if (!(cond)) {                                                  \
      throw ::lrfind::InputError(::lrfind::concat(__VA_ARGS__));    \
    }                                                               \
  } while (0)
