#pragma once
// SIGINT and SIGTERM (Ctrl-C, scancel, a batch system's time limit) become a stop
// request that the sweep sees between steps, so an interrupted job stops within a step
// on every rank and keeps its results. A second signal of the same kind ends the process
// at once, as if no handler were installed.

namespace lrfind::runtime {

class InterruptHandler {
 public:
  InterruptHandler();   // installs the handlers (one InterruptHandler at a time)
  ~InterruptHandler();  // puts the previous handlers back
  InterruptHandler(const InterruptHandler&) = delete;
  InterruptHandler& operator=(const InterruptHandler&) = delete;

  // The first signal received since construction, or 0.
  static int received();
};

}  // namespace lrfind::runtime
