#include "comm/wait.h"

#include <algorithm>
#include <cstdio>
#include <thread>

namespace lrfind::comm {
namespace {

using Clock = std::chrono::steady_clock;

// Spinning keeps the latency of a healthy step's collectives as low as a blocking MPI
// call's (Open MPI polls too); past this, the waiting rank sleeps instead.
constexpr auto kSpin = std::chrono::milliseconds(20);
constexpr auto kFirstPause = std::chrono::microseconds(50);
constexpr auto kLongestPause = std::chrono::milliseconds(2);

// "300", "60", "0.3": tenths of a second, without a trailing ".0".
std::string seconds(Clock::duration d) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f", std::chrono::duration<double>(d).count());
  std::string out = text;
  if (out.size() > 2 && out.compare(out.size() - 2, 2, ".0") == 0) out.resize(out.size() - 2);
  return out;
}

}  // namespace

void boundedWait(const std::function<bool()>& done, const WaitPolicy& policy, const std::string& label,
                 const std::function<std::string()>& waiting_for) {
  if (done()) return;
  const auto start = Clock::now();
  const std::string prefix = label.empty() ? std::string() : label + ": ";
  bool warned = false;
  auto pause = kFirstPause;
  while (!done()) {
    const auto waited = Clock::now() - start;
    if (!warned && policy.on_stall && policy.stall_warning.count() > 0 && waited >= policy.stall_warning) {
      warned = true;
      policy.on_stall(concat(prefix, "waiting ", seconds(waited), " s for ", waiting_for()));
    }
    if (waited >= policy.timeout) {
      throw CommTimeout(concat(prefix, waiting_for(), " did not answer within ", seconds(policy.timeout), " s (",
                               policy.timeout_option, ")"));
    }
    if (waited < kSpin) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(pause);
      pause = std::min<std::chrono::microseconds>(pause * 2, kLongestPause);
    }
  }
}

std::string describeRanks(const std::vector<int>& ranks, const std::vector<std::string>& names) {
  std::string numbers, where;
  for (int r : ranks) {
    numbers += concat(numbers.empty() ? "" : ", ", r);
    if (r >= 0 && static_cast<std::size_t>(r) < names.size() && !names[static_cast<std::size_t>(r)].empty()) {
      where += concat(where.empty() ? "" : "; ", names[static_cast<std::size_t>(r)]);
    }
  }
  return concat(ranks.size() == 1 ? "rank " : "ranks ", numbers, where.empty() ? "" : concat(" (", where, ")"));
}

}  // namespace lrfind::comm
