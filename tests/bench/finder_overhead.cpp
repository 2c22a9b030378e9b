// finder_overhead: what the sweep costs on top of a bare LibTorch training loop.
//
// Both run the same 100 steps (same model, weights, data, batches and lr schedule):
// the bare loop sets the lr, trains and records the loss; the sweep adds the state
// snapshot/restore, smoothing, the stop rule, the per-step gather/decision through the
// Communicator, suggestions and, in the second figure, the HDF5 results file flushed
// every step (written from a worker thread, as lrfind_dist does).
//
// Usage: finder_overhead [--steps N] [--reps R] [--batch B] [--threads T] [--hidden H]
//                        [--device cpu|cuda]
// (launch/gpu_check.sh runs the wide MLP on the GPU: --device cuda --batch 256 --hidden 1024.)

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "finder/schedule.h"
#include "finder/sweep.h"
#include "runtime/async_observer.h"
#include "runtime/batches.h"
#include "runtime/dataset.h"
#include "runtime/factories.h"
#include "runtime/results.h"
#include "runtime/run_info.h"
#include "runtime/threads.h"

namespace {

using Clock = std::chrono::steady_clock;
using namespace lrfind;

struct Args {
  int64_t steps = 100, reps = 15, batch = 32, hidden = 256;
  int threads = 1;
  std::string device = "cpu";
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const long long v = std::atoll(argv[i + 1]);
    if (k == "--device") a.device = argv[i + 1];
    else if (k == "--steps") a.steps = v;
    else if (k == "--reps") a.reps = v;
    else if (k == "--batch") a.batch = v;
    else if (k == "--threads") a.threads = static_cast<int>(v);
    else if (k == "--hidden") a.hidden = v;
    else {
      std::fprintf(stderr, "unknown argument %s\n", k.c_str());
      std::exit(2);
    }
  }
  return a;
}

torch::nn::Sequential makeNet(int64_t in, int64_t hidden, int64_t out) {
  torch::manual_seed(0);
  return torch::nn::Sequential(torch::nn::Linear(in, hidden), torch::nn::ReLU(), torch::nn::Linear(hidden, hidden),
                               torch::nn::ReLU(), torch::nn::Linear(hidden, out));
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  runtime::setComputeThreads(a.threads);
  const c10::Device device(a.device);
  const auto data = runtime::makeSynthetic(0);
  const auto loss_fn = runtime::makeLoss("cross_entropy");
  auto net = makeNet(data.x.size(1), a.hidden, data.numClasses());
  net->to(device);
  auto model = finder::makeModel(net);
  torch::optim::SGD opt(model->parameters(), torch::optim::SGDOptions(1e-5).momentum(0.9));
  runtime::BatchPlan plan;
  plan.batch_size = a.batch;
  finder::SweepOptions o;
  o.min_lr = 1e-5;
  o.max_lr = 0.1;
  o.num_training = a.steps;
  o.early_stop_threshold.reset();  // both run every step
  const std::string out = (std::filesystem::temp_directory_path() / "lrfind_bench.h5").string();

  // The bare loop trains the model for real; restore it between repetitions the same
  // way for both (outside the timed region) so every repetition starts equal.
  std::vector<at::Tensor> initial;
  for (auto& p : model->parameters()) initial.push_back(p.detach().clone());
  auto reset = [&] {
    torch::NoGradGuard g;
    auto params = model->parameters();
    for (std::size_t i = 0; i < params.size(); ++i) params[i].copy_(initial[i]);
    opt.state().clear();
  };

  auto bare = [&] {
    runtime::ShardedBatches batches(data, plan, device);
    std::vector<double> losses;
    losses.reserve(a.steps);
    model->setTraining(true);
    const auto t0 = Clock::now();
    for (int64_t k = 0; k < a.steps; ++k) {
      for (auto& g : opt.param_groups()) g.options().set_lr(finder::scheduledLr(k, o));
      opt.zero_grad();
      auto b = batches.next();
      auto loss = loss_fn(model->forward(b.input), b.target);
      loss.backward();
      opt.step();
      losses.push_back(loss.item<double>());
    }
    return std::chrono::duration<double>(Clock::now() - t0).count();
  };
  auto sweep = [&](bool with_file) {
    runtime::ShardedBatches batches(data, plan, device);
    std::filesystem::remove(out);
    runtime::RunInfo info;
    const auto t0 = Clock::now();
    std::unique_ptr<runtime::ResultsWriter> writer;
    std::unique_ptr<runtime::AsyncObserver> writer_thread;
    finder::SweepContext ctx;
    if (with_file) {  // as lrfind_dist does it
      writer = std::make_unique<runtime::ResultsWriter>(out, info);
      writer_thread = std::make_unique<runtime::AsyncObserver>(*writer);
      ctx.observer = writer_thread.get();
    }
    finder::runSweep(*model, opt, batches, loss_fn, o, ctx);
    writer_thread.reset();
    writer.reset();
    return std::chrono::duration<double>(Clock::now() - t0).count();
  };

  // Warm-up: allocator, OpenBLAS threads, first-touch of the data.
  reset(); bare(); reset(); sweep(true); reset();
  // This machine is shared and noisy: the three variants run back to back in a
  // rotating order, and each repetition's sweep times are divided by the same
  // repetition's bare time (paired ratios); the medians of those ratios are reported.
  std::vector<double> t_bare, r_sweep, r_file;
  for (int64_t r = 0; r < a.reps; ++r) {
    double t[3];
    for (int i = 0; i < 3; ++i) {
      const int v = static_cast<int>((i + r) % 3);
      reset();
      t[v] = v == 0 ? bare() : sweep(v == 2);
    }
    t_bare.push_back(t[0]);
    r_sweep.push_back(t[1] / t[0]);
    r_file.push_back(t[2] / t[0]);
  }
  std::filesystem::remove(out);
  const double mb = median(t_bare);
  std::printf("finder_overhead: %s, %lld steps, MLP %lld-%lld-%lld-%lld, batch %lld, %d thread(s), %lld reps\n",
              device.str().c_str(), static_cast<long long>(a.steps), static_cast<long long>(data.x.size(1)),
              static_cast<long long>(a.hidden), static_cast<long long>(a.hidden),
              static_cast<long long>(data.numClasses()), static_cast<long long>(a.batch), a.threads,
              static_cast<long long>(a.reps));
  std::printf("  bare LibTorch loop (median)          %8.2f ms  (%.3f ms/step)\n", mb * 1e3, mb * 1e3 / a.steps);
  std::printf("  lrfind sweep / bare                  ratio %.3f  (median of paired ratios)\n", median(r_sweep));
  std::printf("  lrfind sweep + HDF5 results / bare   ratio %.3f  (median of paired ratios)\n", median(r_file));
  return 0;
}
