// precision_cost: the step time of --precision bf16 against fp32 on this CPU.
//
// Two MLPs, SGD, one thread, 100 steps: the digits MLP 64-64-10 on digits-shaped data
// (1797 x 64, 10 classes; scikit-learn's digits set has that shape) at batch 32, and the
// wide 784-1024-1024-10 MLP on 4096 x 784 synthetic data at batch 64. Each repetition
// runs the fp32 and the bf16 sweep back to back in alternating order; the bf16 time is
// divided by the same repetition's fp32 time (paired ratios) and the median is reported.
// Whether bf16 pays on a CPU depends on its bf16 instructions (AVX512-BF16, AMX); where
// they are missing, autocast's casts are pure overhead.
//
// Usage: precision_cost [--steps N] [--reps R] [--threads T]

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

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Case {
  const char* name;
  runtime::SyntheticSpec data;
  std::vector<int64_t> widths;  // layer widths, input first
  int64_t batch;
};

}  // namespace

int main(int argc, char** argv) {
  int64_t steps = 100, reps = 7;
  int threads = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const long long v = std::atoll(argv[i + 1]);
    if (k == "--steps") steps = v;
    else if (k == "--reps") reps = v;
    else if (k == "--threads") threads = static_cast<int>(v);
    else {
      std::fprintf(stderr, "unknown argument %s\n", k.c_str());
      return 2;
    }
  }
  runtime::setComputeThreads(threads);
  const c10::Device cpu(c10::DeviceType::CPU);
  const auto loss_fn = runtime::makeLoss("cross_entropy");
  const Case cases[] = {{"digits MLP 64-64-10, batch 32", {1797, 64, 10}, {64, 64, 10}, 32},
                        {"wide MLP 784-1024-1024-10, batch 64", {4096, 784, 10}, {784, 1024, 1024, 10}, 64}};
  std::printf("precision_cost: SGD, %lld steps, %d thread(s), %lld reps, median of paired ratios\n",
              static_cast<long long>(steps), threads, static_cast<long long>(reps));
  for (const auto& c : cases) {
    const auto data = runtime::makeSynthetic(0, c.data);
    torch::manual_seed(0);
    torch::nn::Sequential net;
    for (std::size_t i = 0; i + 1 < c.widths.size(); ++i) {
      if (i > 0) net->push_back(torch::nn::ReLU());
      net->push_back(torch::nn::Linear(c.widths[i], c.widths[i + 1]));
    }
    auto model = finder::makeModel(net);
    torch::optim::SGD opt(model->parameters(), torch::optim::SGDOptions(1e-5));
    runtime::BatchPlan plan;
    plan.batch_size = c.batch;
    auto sweep = [&](finder::Precision precision) {
      runtime::ShardedBatches batches(data, plan, cpu);
      finder::SweepOptions o;
      o.min_lr = 1e-5;
      o.max_lr = 1e-1;
      o.num_training = steps;
      o.early_stop_threshold.reset();
      o.precision = precision;
      const auto t0 = Clock::now();
      finder::runSweep(*model, opt, batches, loss_fn, o);
      return std::chrono::duration<double>(Clock::now() - t0).count();
    };
    sweep(finder::Precision::kFp32);  // warm-up
    sweep(finder::Precision::kBf16);
    std::vector<double> fp32, ratio;
    for (int64_t r = 0; r < reps; ++r) {
      double t_fp32 = 0, t_bf16 = 0;
      if (r % 2 == 0) {
        t_fp32 = sweep(finder::Precision::kFp32);
        t_bf16 = sweep(finder::Precision::kBf16);
      } else {
        t_bf16 = sweep(finder::Precision::kBf16);
        t_fp32 = sweep(finder::Precision::kFp32);
      }
      fp32.push_back(t_fp32);
      ratio.push_back(t_bf16 / t_fp32);
    }
    std::printf("  %-38s fp32 %.3f ms/step   bf16 / fp32  ratio %.2f\n", c.name,
                median(fp32) * 1e3 / static_cast<double>(steps), median(ratio));
  }
  return 0;
}
