// validation_cost: what validation mode adds to each step of a sweep.
//
// Digits-shaped data (1797 samples x 64 features, 10 classes: scikit-learn's digits set
// has that shape) and the digits MLP 64-64-10, SGD, batch 32, one thread. The last 20%
// (360 rows) are held out as --val-fraction 0.2 holds them out. Three sweeps of the same
// steps: no validation; the whole held-out set evaluated after every step; only its
// first batch (--val-batches 1). Each repetition runs the three back to back in a
// rotating order, and the validated sweeps' times are divided by the same repetition's
// plain sweep (paired ratios); the medians are reported, with the evaluation's own time
// per step (the sweep's eval_seconds).
//
// Usage: validation_cost [--steps N] [--reps R] [--batch B] [--threads T]

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "finder/sweep.h"
#include "runtime/batches.h"
#include "runtime/dataset.h"
#include "runtime/factories.h"
#include "runtime/threads.h"

namespace {

using Clock = std::chrono::steady_clock;
using namespace lrfind;

struct Args {
  int64_t steps = 100, reps = 11, batch = 32;
  int threads = 1;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const long long v = std::atoll(argv[i + 1]);
    if (k == "--steps") a.steps = v;
    else if (k == "--reps") a.reps = v;
    else if (k == "--batch") a.batch = v;
    else if (k == "--threads") a.threads = static_cast<int>(v);
    else {
      std::fprintf(stderr, "unknown argument %s\n", k.c_str());
      std::exit(2);
    }
  }
  return a;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  runtime::setComputeThreads(a.threads);
  const c10::Device cpu(c10::DeviceType::CPU);
  const auto data = runtime::makeSynthetic(0, runtime::SyntheticSpec{1797, 64, 10});
  const int64_t train = data.totalSamples() - runtime::heldOutRows(data.totalSamples(), 0.2);
  const int64_t held = data.totalSamples() - train;
  const auto loss_fn = runtime::makeLoss("cross_entropy");
  torch::manual_seed(0);
  torch::nn::Sequential net(torch::nn::Linear(64, 64), torch::nn::ReLU(), torch::nn::Linear(64, 10));
  auto model = finder::makeModel(net);
  torch::optim::SGD opt(model->parameters(), torch::optim::SGDOptions(1e-5));
  runtime::BatchPlan plan;
  plan.batch_size = a.batch;
  finder::SweepOptions o;
  o.min_lr = 1e-5;
  o.max_lr = 1;
  o.num_training = a.steps;
  o.early_stop_threshold.reset();  // every variant runs every step

  // rows: the held-out rows evaluated after each step (0: no validation). Returns the
  // sweep's seconds and its median evaluation seconds per step.
  auto sweep = [&](int64_t rows) {
    runtime::ShardedBatches batches(data, plan, cpu, train);
    runtime::EvalBatches held_out(data, runtime::evalRows(train, rows, 0, 1), a.batch, cpu);
    finder::SweepContext ctx;
    auto options = o;
    if (rows > 0) {
      ctx.validation = &held_out;
      options.monitor = finder::Monitor::kVal;
    }
    const auto t0 = Clock::now();
    const auto r = finder::runSweep(*model, opt, batches, loss_fn, options, ctx);
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    return std::make_pair(seconds, r.eval_seconds.empty() ? 0.0 : median(r.eval_seconds));
  };

  const int64_t variants[] = {0, held, std::min<int64_t>(a.batch, held)};
  for (const int64_t rows : variants) sweep(rows);  // warm-up
  std::vector<double> plain, ratio_all, ratio_one, eval_all, eval_one;
  for (int64_t r = 0; r < a.reps; ++r) {
    std::pair<double, double> t[3];
    for (int i = 0; i < 3; ++i) {
      const auto v = static_cast<std::size_t>((i + r) % 3);
      t[v] = sweep(variants[v]);
    }
    plain.push_back(t[0].first);
    ratio_all.push_back(t[1].first / t[0].first);
    ratio_one.push_back(t[2].first / t[0].first);
    eval_all.push_back(t[1].second);
    eval_one.push_back(t[2].second);
  }
  const double per_step = median(plain) * 1e3 / static_cast<double>(a.steps);
  std::printf("validation_cost: digits-shaped data (%lld x 64, 10 classes), MLP 64-64-10, SGD, %lld steps, batch %lld, "
              "%d thread(s), %lld reps; %lld training rows, %lld held out (--val-fraction 0.2)\n",
              static_cast<long long>(data.totalSamples()), static_cast<long long>(a.steps),
              static_cast<long long>(a.batch), a.threads, static_cast<long long>(a.reps),
              static_cast<long long>(train), static_cast<long long>(held));
  std::printf("  sweep without validation (median)                 %.3f ms/step\n", per_step);
  std::printf("  validating all %3lld held-out rows / without        ratio %.2f  (evaluation %.3f ms/step)\n",
              static_cast<long long>(held), median(ratio_all), median(eval_all) * 1e3);
  std::printf("  validating %3lld rows (--val-batches 1) / without   ratio %.2f  (evaluation %.3f ms/step)\n",
              static_cast<long long>(variants[2]), median(ratio_one), median(eval_one) * 1e3);
  return 0;
}
