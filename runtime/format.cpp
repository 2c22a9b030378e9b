#include "runtime/format.h"

#include <cmath>
#include <cstdio>

namespace lrfind::runtime {

std::string formatLr(double lr) {
  if (!std::isfinite(lr)) return "none";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", lr);
  return buf;
}

std::string formatDuration(double seconds) {
  // Beyond a year the estimate means nothing, and the cast below stays in range.
  if (!std::isfinite(seconds) || seconds < 0 || seconds > 3.2e7) return "?";
  const auto total = static_cast<long long>(std::llround(seconds));
  const long long h = total / 3600, m = total / 60 % 60, s = total % 60;
  char buf[32];
  if (h > 0) {
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", h, m, s);
  } else {
    std::snprintf(buf, sizeof buf, "%02lld:%02lld", m, s);
  }
  return buf;
}

}  // namespace lrfind::runtime
