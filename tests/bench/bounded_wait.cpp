// bounded_wait: what the bounded waits of the MPI backend (non-blocking calls finished
// by comm/wait.h's boundedWait, the gather as per-rank receives) cost against the old
// blocking calls (WaitPolicy::blocking), on whole sweeps, at np 2:
//
//   mpirun -np 2 build/tests/bench/bounded_wait [--pairs N] [--steps S]
//
// Two models, one thread per rank, SGD, batch 16 per rank: the digits MLP
// (64-64-10) and a wide MLP (784-1024-1024-10, 1.86M parameters). Each pair runs the
// two variants back to back in alternating order, so drift hits both alike; the figure
// is the median over pairs of (bounded step time / blocking step time), where a step
// time is the sweep's wall time over its steps, the maximum over ranks.

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "comm/mpi_communicator.h"
#include "comm/mpi_environment.h"
#include "sweep_bench.h"

namespace {

// Seconds per step of one sweep through the bounded or the blocking MPI calls.
double sweepStepSeconds(lrfind::comm::MpiCommunicator& comm, const std::vector<int64_t>& widths, int64_t steps,
                        bool blocking) {
  lrfind::comm::WaitPolicy policy;
  policy.blocking = blocking;
  comm.setWaitPolicy(policy);
  return lrfind::bench::sweepStepSeconds(comm, widths, steps);
}

}  // namespace

int main(int argc, char** argv) {
  int pairs = 9;
  int64_t steps = 200;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--pairs") pairs = std::atoi(argv[i + 1]);
    if (flag == "--steps") steps = std::atoll(argv[i + 1]);
  }
  lrfind::comm::MpiEnvironment mpi;
  lrfind::comm::MpiCommunicator comm;
  torch::set_num_threads(1);
  struct Case {
    const char* name;
    std::vector<int64_t> widths;
    int64_t steps;
  };
  const std::vector<Case> cases = {{"digits MLP 64-64-10", {64, 64, 10}, steps * 5},
                                   {"wide MLP 784-1024-1024-10", {784, 1024, 1024, 10}, steps}};
  if (comm.rank() == 0) {
    std::printf("bounded_wait: np %d, %d pairs, batch 16 per rank, 1 thread per rank\n", comm.size(), pairs);
    std::printf("%-28s %14s %14s %22s\n", "model", "blocking ms", "bounded ms", "bounded/blocking");
  }
  for (const auto& c : cases) {
    sweepStepSeconds(comm, c.widths, 20, false);  // warm-up: allocations, connections
    std::vector<double> blocking, bounded, ratios;
    for (int p = 0; p < pairs; ++p) {
      const bool bounded_first = p % 2 == 1;
      const double a = sweepStepSeconds(comm, c.widths, c.steps, !bounded_first);
      const double b = sweepStepSeconds(comm, c.widths, c.steps, bounded_first);
      const double t_blocking = bounded_first ? b : a, t_bounded = bounded_first ? a : b;
      blocking.push_back(t_blocking);
      bounded.push_back(t_bounded);
      ratios.push_back(t_bounded / t_blocking);
    }
    if (comm.rank() == 0) {
      using lrfind::bench::median;
      std::printf("%-28s %14.3f %14.3f %22.3f\n", c.name, median(blocking) * 1e3, median(bounded) * 1e3,
                  median(ratios));
    }
  }
  return 0;
}
