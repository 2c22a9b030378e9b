// grid_throughput: what rank groups buy a tuning grid (README "Tuning grid"). The wide
// MLP (784-1024-1024-10, TorchScript) on an HDF5 file of 8192 x 784 float32 samples,
// --grid seed=0,1,2,3, 200 steps each, batch 16, one thread per rank:
//
//   build/tests/bench/grid_throughput [--reps R] [--steps S]
//
// runs, in alternating order, `lrfind_dist` alone (one process, the four sweeps one
// after another) and `mpirun -np 2 lrfind_dist --ranks-per-sweep 1` (two sweeps at a
// time), and reads each sweep's started_at and ended_at from the results file. It prints
// the medians over the repetitions of:
// - the sweeping time, from the first sweep's start to the last sweep's end, at np 1 and
//   np 2, and their ratio (the issue's goal: <= 0.60; 0.5 is perfect);
// - the start-up, from launching the command to the first sweep's start;
// - the gap between consecutive sweeps of one rank group (a model reset, a new optimizer
//   and the next sweep's rows of the data), its median and its maximum.

#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include <torch/script.h>
#include <torch/torch.h>

#include "runtime/results.h"
#include "unit/test_util.h"

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double wallNow() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

void saveWideMlp(const std::string& path) {
  torch::manual_seed(0);
  torch::jit::Module m("WideMlp");
  const std::vector<int64_t> sizes = {784, 1024, 1024, 10};
  for (std::size_t i = 0; i + 1 < sizes.size(); ++i) {
    const double scale = 1.0 / std::sqrt(static_cast<double>(sizes[i]));
    m.register_parameter("w" + std::to_string(i), (torch::randn({sizes[i], sizes[i + 1]}) * scale).set_requires_grad(true),
                         false);
    m.register_parameter("b" + std::to_string(i), torch::zeros({sizes[i + 1]}).set_requires_grad(true), false);
  }
  m.define(R"(
def forward(self, x):
    h = torch.relu(torch.matmul(x, self.w0) + self.b0)
    h = torch.relu(torch.matmul(h, self.w1) + self.b1)
    return torch.matmul(h, self.w2) + self.b2
)");
  m.save(path);
}

struct Run {
  double sweeping = 0;  // first start to last end
  double startup = 0;   // launch to first start
  std::vector<double> gaps;
};

Run runGrid(const lrfind::testing::TempDir& dir, int np, int steps) {
  const std::string out = dir.file("np" + std::to_string(np) + ".h5");
  const std::string launcher =
      np == 1 ? std::string()
              : "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 " LRFIND_MPIEXEC " -np " +
                    std::to_string(np) + " ";
  const std::string cmd = "cd '" + dir.path().string() + "' && " + launcher + "'" LRFIND_DIST_PATH
                          "' --model wide.pt --data d.h5 --threads 1 --batch-size 16 --num-training " +
                          std::to_string(steps) + " --grid seed=0,1,2,3 " +
                          (np > 1 ? "--ranks-per-sweep 1 " : "") + "--plot '' --force --out '" + out +
                          "' > /dev/null 2> bench_err.txt";
  const double launched = wallNow();
  const int status = std::system(cmd.c_str());
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "grid_throughput: %s failed; see %s\n", cmd.c_str(), dir.file("bench_err.txt").c_str());
    std::exit(1);
  }
  const auto g = lrfind::runtime::readGridResults(out);
  Run r;
  double first = 1e300, last = 0;
  std::map<int, std::vector<std::pair<double, double>>> by_group;
  for (const auto& [i, s] : g.sweeps) {
    const double start = s.numbers.at("started_at"), end = s.numbers.at("ended_at");
    first = std::min(first, start);
    last = std::max(last, end);
    by_group[static_cast<int>(s.numbers.at("group"))].emplace_back(start, end);
  }
  for (auto& [group, spans] : by_group) {
    std::sort(spans.begin(), spans.end());
    for (std::size_t k = 1; k < spans.size(); ++k) r.gaps.push_back(spans[k].first - spans[k - 1].second);
  }
  r.sweeping = last - first;
  r.startup = first - launched;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 3, steps = 200;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--reps") reps = std::atoi(argv[i + 1]);
    if (flag == "--steps") steps = std::atoi(argv[i + 1]);
  }
  lrfind::testing::TempDir dir;
  lrfind::testing::writeClassification(dir.file("d.h5"), 8192, 784, 10);
  saveWideMlp(dir.file("wide.pt"));
  std::printf("grid_throughput: wide MLP 784-1024-1024-10, --grid seed=0,1,2,3, %d steps, batch 16, 1 thread per "
              "rank, %d repetitions\n", steps, reps);
  std::vector<double> one, two, ratio, start_one, start_two, gaps;
  double worst_gap = 0;
  for (int rep = 0; rep < reps; ++rep) {
    // Alternating order: drift of the machine hits both alike.
    Run a, b;
    if (rep % 2 == 0) {
      a = runGrid(dir, 1, steps);
      b = runGrid(dir, 2, steps);
    } else {
      b = runGrid(dir, 2, steps);
      a = runGrid(dir, 1, steps);
    }
    one.push_back(a.sweeping);
    two.push_back(b.sweeping);
    ratio.push_back(b.sweeping / a.sweeping);
    start_one.push_back(a.startup);
    start_two.push_back(b.startup);
    for (const auto* run : {&a, &b}) {
      for (const double gap : run->gaps) {
        gaps.push_back(gap);
        worst_gap = std::max(worst_gap, gap);
      }
    }
    std::printf("  rep %d: sweeping np1 %.2f s, np2 (R=1) %.2f s, ratio %.3f\n", rep, a.sweeping, b.sweeping,
                b.sweeping / a.sweeping);
  }
  std::printf("sweeping time: np1 %.2f s, np2 --ranks-per-sweep 1 %.2f s (medians)\n", median(one), median(two));
  std::printf("ratio np2 / np1: %.3f (median of paired ratios; goal <= 0.60, perfect 0.5)\n", median(ratio));
  std::printf("start-up, launch to the first sweep's start: np1 %.2f s, np2 %.2f s\n", median(start_one),
              median(start_two));
  std::printf("gap between consecutive sweeps of a group: median %.1f ms, max %.1f ms (%zu gaps)\n",
              1000 * median(gaps), 1000 * worst_gap, gaps.size());
  return 0;
}
