#pragma once
// Error types and check macros, the base below every layer (gloo keeps the same in
// gloo/common/error.h). Two tiers, as in gloo: LRFIND_CHECK for broken invariants and
// LRFIND_INPUT_CHECK for bad input, and typed exceptions a caller can catch and report.
// A message names what the layer that throws knows: the library says `min_lr`; a caller
// that knows the option by another name (a CLI flag) passes its names down.

#include <stdexcept>
#include <string>

#include "common/string.h"

namespace lrfind {

// Base of every lrfind exception. what() is one line meant for a user.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The user gave something unusable: an option value, a file, a dataset. Exit code 2.
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
