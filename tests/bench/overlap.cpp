// overlap: what starting each gradient bucket's allreduce during backward
// (SweepContext::overlap_gradients, comm/grad_sync.h) buys over averaging after
// backward, on whole sweeps at np 2, one thread per rank, batch 16 per rank, SGD:
//
//   mpirun -np 2 build/tests/bench/overlap [--reps R] [--steps S]
//
// In each repetition, in a rotating order so that drift hits all alike:
// - the compute-only limit: every rank runs its own one-process sweep at the same time
//   (the same contention for the cores, no communication);
// - the wide MLP (784-1024-1024-10, 1.86M parameters) at np 2, blocking and overlapped,
//   with 25, 5 and 1 MiB buckets;
// - the digits MLP (64-64-10) at np 2, blocking and overlapped (latency-bound).
// It prints the medians of the step times (the slowest rank's) and of the paired ratios:
// the overlap ratio (overlapped at 25 MiB / the limit; the goal is <= 1.10),
// blocking / limit, and overlapped / blocking per bucket size.

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "comm/mpi_communicator.h"
#include "comm/mpi_environment.h"
#include "comm/self_communicator.h"
#include "sweep_bench.h"

namespace {

using lrfind::bench::median;
using lrfind::bench::sweepStepSeconds;

lrfind::finder::SweepContext averaging(bool overlap, double bucket_mib) {
  lrfind::finder::SweepContext context;
  context.overlap_gradients = overlap;
  context.bucket_bytes = static_cast<std::size_t>(bucket_mib * (1 << 20));
  return context;
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 7;
  int64_t steps = 100;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--reps") reps = std::atoi(argv[i + 1]);
    if (flag == "--steps") steps = std::atoll(argv[i + 1]);
  }
  lrfind::comm::MpiEnvironment mpi;
  lrfind::comm::MpiCommunicator world;
  lrfind::comm::SelfCommunicator self;
  torch::set_num_threads(1);
  const std::vector<int64_t> wide{784, 1024, 1024, 10}, digits{64, 64, 10};
  const std::vector<double> buckets{25, 5, 1};

  // The variants, each a function returning seconds per step; times[v] collects them.
  std::vector<std::pair<std::string, std::function<double()>>> variants;
  variants.emplace_back("wide: limit (1-process sweeps side by side)",
                        [&] { return sweepStepSeconds(self, wide, steps); });
  for (const double mib : buckets) {
    for (const bool overlap : {false, true}) {
      variants.emplace_back(std::string("wide: ") + (overlap ? "overlapped" : "blocking") + ", " +
                                std::to_string(static_cast<int>(mib)) + " MiB buckets",
                            [&, overlap, mib] { return sweepStepSeconds(world, wide, steps, averaging(overlap, mib)); });
    }
  }
  for (const bool overlap : {false, true}) {
    variants.emplace_back(std::string("digits: ") + (overlap ? "overlapped" : "blocking"),
                          [&, overlap] { return sweepStepSeconds(world, digits, 5 * steps, averaging(overlap, 25)); });
  }
  for (auto& v : variants) v.second();  // warm-up: allocations, connections
  std::vector<std::vector<double>> times(variants.size());
  for (int r = 0; r < reps; ++r) {
    for (std::size_t i = 0; i < variants.size(); ++i) {
      const std::size_t v = (i + static_cast<std::size_t>(r)) % variants.size();
      times[v].push_back(variants[v].second());
    }
  }
  if (world.rank() != 0) return 0;
  std::printf("overlap: np %d, %d reps, %lld steps (digits: %lld), batch 16 per rank, 1 thread per rank\n",
              world.size(), reps, static_cast<long long>(steps), static_cast<long long>(5 * steps));
  for (std::size_t v = 0; v < variants.size(); ++v) {
    std::printf("  %-46s %8.3f ms/step\n", variants[v].first.c_str(), median(times[v]) * 1e3);
  }
  // Paired ratios: a / b within each repetition, then the median.
  const auto ratio = [&](std::size_t a, std::size_t b) {
    std::vector<double> r;
    for (int k = 0; k < reps; ++k) r.push_back(times[a][static_cast<std::size_t>(k)] / times[b][static_cast<std::size_t>(k)]);
    return median(r);
  };
  std::printf("  overlap ratio (overlapped 25 MiB / limit)       %6.3f  (goal <= 1.10)\n", ratio(2, 0));
  std::printf("  blocking 25 MiB / limit                         %6.3f\n", ratio(1, 0));
  for (std::size_t b = 0; b < buckets.size(); ++b) {
    std::printf("  overlapped / blocking, %2d MiB buckets           %6.3f\n", static_cast<int>(buckets[b]),
                ratio(2 + 2 * b, 1 + 2 * b));
  }
  std::printf("  digits: overlapped / blocking                   %6.3f  (goal <= 1.03)\n",
              ratio(variants.size() - 1, variants.size() - 2));
  return 0;
}
