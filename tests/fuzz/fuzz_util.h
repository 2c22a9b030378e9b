#pragma once
// Shared by the fuzz targets.

#include <unistd.h>

#include <cstdlib>
#include <string>

namespace lrfind::fuzz {

// A scratch file for this process, $TMPDIR/lrfind_fuzz_<pid><suffix>: targets that
// must hand lrfind a path write their input there.
inline std::string scratchPath(const char* suffix) {
  const char* dir = std::getenv("TMPDIR");
  return std::string(dir != nullptr ? dir : "/tmp") + "/lrfind_fuzz_" + std::to_string(::getpid()) + suffix;
}

}  // namespace lrfind::fuzz
