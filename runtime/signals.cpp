#include "runtime/signals.h"

#include <signal.h>

#include <atomic>

#include "common/error.h"

namespace lrfind::runtime {
namespace {

volatile sig_atomic_t g_received = 0;
std::atomic<bool> g_installed{false};
struct sigaction g_previous_int, g_previous_term;

extern "C" void onInterrupt(int sig) {
  if (g_received != 0) {
    // Asked twice: stop now.
    ::signal(sig, SIG_DFL);
    ::raise(sig);
    return;
  }
  g_received = sig;
}

}  // namespace

InterruptHandler::InterruptHandler() {
  LRFIND_CHECK(!g_installed.exchange(true), "only one InterruptHandler may be installed at a time");
  g_received = 0;
  struct sigaction action {};
  action.sa_handler = onInterrupt;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;  // blocking calls (MPI, file I/O) resume; the sweep polls
  sigaction(SIGINT, &action, &g_previous_int);
  sigaction(SIGTERM, &action, &g_previous_term);
}

InterruptHandler::~InterruptHandler() {
  sigaction(SIGINT, &g_previous_int, nullptr);
  sigaction(SIGTERM, &g_previous_term, nullptr);
  g_installed = false;
}

int InterruptHandler::received() { return g_received; }

}  // namespace lrfind::runtime
