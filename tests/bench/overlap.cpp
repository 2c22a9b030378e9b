// overlap: how gradient averaging (comm/grad_sync.h) costs on whole sweeps at np 2, one
// thread per rank, batch 16 per rank, SGD, against the compute-only limit:
//
//   mpirun -np 2 build/tests/bench/overlap [--reps R] [--steps S]
//
// In each repetition, in a rotating order so that drift hits all alike:
// - the compute-only limit: every rank runs its own one-process sweep at the same time
//   (the same contention for the cores, no communication);
// - the wide MLP (784-1024-1024-10, 1.86M parameters) at np 2: what the sweep does by
//   default (overlapped, shared memory, 1 MiB first bucket then 25 MiB); the same over
//   MPI messages, and blocking over MPI messages (the path before shared memory);
//   blocking and overlapped over shared memory with 25, 5 and 1 MiB buckets;
// - the digits MLP (64-64-10) at np 2, blocking and overlapped (latency-bound).
// It prints the medians of the step times (the slowest rank's) and of the paired ratios:
// the overlap ratio (the default / the limit; the goal is <= 1.10), and
// overlapped / blocking per bucket size. Then one more sweep per path with a timeline:
// rank 0's backward, the loss gather and decision broadcast, the wait for the buckets,
// and each bucket's start and completion relative to backward's start.

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
using lrfind::comm::AveragingOptions;

// Bucket sizes in MiB (0: the defaults, 1 MiB first and 25 MiB after), overlap, and
// shared memory or MPI messages.
lrfind::finder::SweepContext averaging(bool overlap, double bucket_mib, bool shm = true) {
  lrfind::finder::SweepContext context;
  context.averaging.overlap = overlap;
  context.averaging.shared_memory = shm;
  if (bucket_mib > 0) {
    context.averaging.bucket_bytes = context.averaging.first_bucket_bytes =
        static_cast<std::size_t>(bucket_mib * (1 << 20));
  }
  return context;
}

double ms(double seconds) { return seconds * 1e3; }

// One more sweep of `context` with a timeline: where rank 0's step time went, the
// medians over the steps after the first five.
void printTimeline(lrfind::comm::Communicator& comm, const std::string& title, const std::vector<int64_t>& widths,
                   int64_t steps, lrfind::finder::SweepContext context) {
  std::vector<lrfind::comm::AveragingTimeline> timeline;
  context.averaging.timeline = &timeline;
  const double step = sweepStepSeconds(comm, widths, steps, context);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank != 0 || timeline.size() <= 5) return;
  timeline.erase(timeline.begin(), timeline.begin() + 5);
  const auto med = [&](auto&& f) {
    std::vector<double> v;
    for (const auto& t : timeline) v.push_back(f(t));
    return median(v);
  };
  const double backward = med([](const auto& t) { return t.backward_end - t.backward_begin; });
  const double control = med([](const auto& t) { return t.finish_begin - t.backward_end; });
  const double wait = med([](const auto& t) { return t.finish_end - t.finish_begin; });
  const double averaged = med([](const auto& t) { return t.finish_end - t.backward_begin; });
  std::printf("\n  timeline, %s: step %.3f ms (rank 0, medians over %zu steps; t = 0 at backward's start)\n",
              title.c_str(), ms(step), timeline.size());
  std::printf("    backward                                   %7.3f ms\n", ms(backward));
  std::printf("    loss gather + decision broadcast           %7.3f ms  (%.1f%% of the step)\n", ms(control),
              100.0 * control / step);
  std::printf("    finish: waiting for the buckets            %7.3f ms\n", ms(wait));
  std::printf("    the rest (forward, optimizer step, zeroing) %6.3f ms\n", ms(step - averaged));
  for (std::size_t b = 0; b < timeline.front().bucket_start.size(); ++b) {
    const double begin = med([&](const auto& t) { return t.bucket_start[b] - t.backward_begin; });
    const double done = med([&](const auto& t) { return t.bucket_done[b] - t.backward_begin; });
    std::printf("    bucket %zu: started %7.3f ms, complete %7.3f ms\n", b, ms(begin), ms(done));
  }
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
  const auto add = [&](const std::string& name, const std::vector<int64_t>& widths, int64_t n,
                       const lrfind::finder::SweepContext& context) {
    variants.emplace_back(name, [&world, &widths, n, context] { return sweepStepSeconds(world, widths, n, context); });
    return variants.size() - 1;
  };
  variants.emplace_back("wide: limit (1-process sweeps side by side)",
                        [&] { return sweepStepSeconds(self, wide, steps); });
  const std::size_t shipped = add("wide: overlapped, shm, default buckets", wide, steps, averaging(true, 0));
  const std::size_t messages_blocking = add("wide: blocking, MPI messages, 25 MiB", wide, steps, averaging(false, 25, false));
  const std::size_t messages_overlapped =
      add("wide: overlapped, MPI messages, default buckets", wide, steps, averaging(true, 0, false));
  std::vector<std::pair<std::size_t, std::size_t>> by_size;  // (blocking, overlapped) per bucket size
  for (const double mib : buckets) {
    const std::string size = std::to_string(static_cast<int>(mib)) + " MiB";
    const std::size_t b = add("wide: blocking, shm, " + size, wide, steps, averaging(false, mib));
    by_size.emplace_back(b, add("wide: overlapped, shm, " + size, wide, steps, averaging(true, mib)));
  }
  const std::size_t digits_blocking = add("digits: blocking", digits, 5 * steps, averaging(false, 0));
  const std::size_t digits_overlapped = add("digits: overlapped", digits, 5 * steps, averaging(true, 0));
  for (auto& v : variants) v.second();  // warm-up: allocations, connections
  std::vector<std::vector<double>> times(variants.size());
  for (int r = 0; r < reps; ++r) {
    for (std::size_t i = 0; i < variants.size(); ++i) {
      const std::size_t v = (i + static_cast<std::size_t>(r)) % variants.size();
      times[v].push_back(variants[v].second());
    }
  }
  if (world.rank() == 0) {
  std::printf("overlap: np %d, %d reps, %lld steps (digits: %lld), batch 16 per rank, 1 thread per rank\n",
              world.size(), reps, static_cast<long long>(steps), static_cast<long long>(5 * steps));
  for (std::size_t v = 0; v < variants.size(); ++v) {
    std::printf("  %-50s %8.3f ms/step\n", variants[v].first.c_str(), median(times[v]) * 1e3);
  }
  // Paired ratios: a / b within each repetition, then the median.
  const auto ratio = [&](std::size_t a, std::size_t b) {
    std::vector<double> r;
    for (int k = 0; k < reps; ++k) r.push_back(times[a][static_cast<std::size_t>(k)] / times[b][static_cast<std::size_t>(k)]);
    return median(r);
  };
  std::printf("  overlap ratio (overlapped, shm, defaults / limit) %6.3f  (goal <= 1.10)\n", ratio(shipped, 0));
  std::printf("  blocking, MPI messages, 25 MiB / limit            %6.3f  (before shared memory)\n",
              ratio(messages_blocking, 0));
  std::printf("  overlapped / blocking, MPI messages               %6.3f\n", ratio(messages_overlapped, messages_blocking));
  for (std::size_t b = 0; b < buckets.size(); ++b) {
    std::printf("  overlapped / blocking, shm, %2d MiB buckets        %6.3f\n", static_cast<int>(buckets[b]),
                ratio(by_size[b].second, by_size[b].first));
  }
  std::printf("  digits: overlapped / blocking                     %6.3f  (goal <= 1.03)\n",
              ratio(digits_overlapped, digits_blocking));
  std::fflush(stdout);
  }
  // Where the time goes (every rank takes part; rank 0 prints).
  printTimeline(self, "wide, limit (1-process sweeps side by side)", wide, steps, averaging(false, 25));
  printTimeline(world, "wide, blocking, MPI messages, 25 MiB", wide, steps, averaging(false, 25, false));
  printTimeline(world, "wide, blocking, shm, 25 MiB", wide, steps, averaging(false, 25));
  printTimeline(world, "wide, overlapped, shm, default buckets", wide, steps, averaging(true, 0));
  printTimeline(world, "wide, overlapped, shm, 1 MiB", wide, steps, averaging(true, 1));
  return 0;
}
