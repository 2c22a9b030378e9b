#include "runtime/app.h"

#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <thread>

#include <torch/cuda.h>
#include <torch/optim/optimizer.h>
#include <torch/utils.h>
#include <torch/version.h>

#include "comm/errors.h"
#include "finder/sweep.h"
#include "lrfind/config.h"
#include "runtime/async_observer.h"
#include "runtime/batches.h"
#include "runtime/dataset.h"
#include "runtime/models.h"
#include "runtime/progress.h"
#include "runtime/report.h"
#include "runtime/results.h"
#include "runtime/threads.h"

namespace lrfind::runtime {
namespace {

c10::Device resolveDevice(const std::string& name) {
  if (name == "cpu") return c10::Device(c10::DeviceType::CPU);
  if (name == "cuda") {
    LRFIND_INPUT_CHECK(torch::cuda::is_available(), "--device cuda: no CUDA GPU is usable (",
                       torch::cuda::device_count() == 0 ? "none visible, or LibTorch built without CUDA"
                                                        : "CUDA unavailable",
                       "); use --device cpu or auto");
    return c10::Device(c10::DeviceType::CUDA, 0);
  }
  LRFIND_INPUT_CHECK(name == "auto", "--device must be auto, cpu or cuda; got \"", name, "\"");
  return torch::cuda::is_available() ? c10::Device(c10::DeviceType::CUDA, 0)
                                     : c10::Device(c10::DeviceType::CPU);
}

Dataset loadData(const RunConfig& c) {
  if (c.data == "synthetic") return makeSynthetic(c.seed);
  return loadHdf5(c.data, c.x_key, c.y_key);
}

// The loss and the targets must fit each other, and the model's output both.
int64_t checkTargets(const RunConfig& c, const Dataset& data) {
  if (lossTakesLabels(c.loss)) {
    LRFIND_INPUT_CHECK(data.has_labels, "--loss ", c.loss, " needs integer class labels, but --data ",
                       data.source, " has float targets in '", c.y_key,
                       "'; use --loss mse, l1, smooth_l1 or bce_with_logits, or store int64 labels");
    return data.numClasses();
  }
  LRFIND_INPUT_CHECK(!data.has_labels, "--loss ", c.loss, " needs float targets, but --data ", data.source,
                     " has integer class labels in '", c.y_key,
                     "'; use --loss cross_entropy or nll, or store float targets");
  return data.y.numel() / data.size();
}

void checkOutput(const at::Tensor& out, const RunConfig& c, const Dataset& data, const std::string& model) {
  if (lossTakesLabels(c.loss)) {
    LRFIND_INPUT_CHECK(out.dim() == 2, "--model ", model, " returns shape ", out.sizes(), "; --loss ", c.loss,
                       " needs [batch, classes]");
    checkLabelsFit(data, out.size(1), model);
  } else {
    const int64_t per_sample = data.y.numel() / data.size();
    LRFIND_INPUT_CHECK(out.numel() / out.size(0) == per_sample, "--model ", model, " returns ",
                       out.numel() / out.size(0), " values per sample but the targets in --data ", data.source,
                       " have ", per_sample);
  }
}

int runChecked(const RunConfig& c) {
  finder::validate(c.sweep);
  LRFIND_INPUT_CHECK(c.batch_size >= 1, "--batch-size must be >= 1, got ", c.batch_size);
  LRFIND_INPUT_CHECK(c.threads >= 0, "--threads must be >= 0, got ", c.threads);
  const int64_t usable = c.sweep.num_training - c.sweep.skip_begin - c.sweep.skip_end;
  if (usable < 2) {
    std::fprintf(stderr,
                 "lrfind_dist: warning: --skip-begin %lld + --skip-end %lld leave %lld of %lld points for the "
                 "suggestion; there will be none\n",
                 static_cast<long long>(c.sweep.skip_begin), static_cast<long long>(c.sweep.skip_end),
                 static_cast<long long>(std::max<int64_t>(usable, 0)), static_cast<long long>(c.sweep.num_training));
  }
  checkOutputPath(c.out, c.force, "--out");
  if (!c.json.empty()) checkOutputPath(c.json, c.force, "--json");
  if (!c.plot.empty()) checkOutputPath(c.plot, c.force, "--plot");

  const int threads = c.threads > 0 ? c.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  setComputeThreads(threads);
  const c10::Device device = resolveDevice(c.device);

  const Dataset data = loadData(c);
  const finder::LossFn loss_fn = makeLoss(c.loss);  // validates the name before the model loads
  const int64_t num_outputs = checkTargets(c, data);
  LoadedModel loaded = loadModel(c.model, data, num_outputs, c.seed, device);
  checkOutput(dryForward(*loaded.model, loaded.name, data, device), c, data, loaded.name);

  OptimizerConfig opt = c.optimizer;
  opt.lr = c.sweep.min_lr;
  auto optimizer = makeOptimizer(loaded.model->parameters(), opt);

  BatchPlan plan;
  plan.batch_size = c.batch_size;
  plan.shuffle = c.shuffle;
  plan.seed = c.seed;
  ShardedBatches batches(data, plan, device);

  RunInfo info;
  info.model = loaded.name;
  info.data = data.source;
  info.optimizer = opt.name;
  info.loss_fn = c.loss;
  info.device = device.str();
  info.batch_size = c.batch_size;
  info.global_batch_size = c.batch_size * plan.world * c.sweep.accumulate;
  info.seed = static_cast<int64_t>(c.seed);
  info.world_size = plan.world;

  ResultsWriter writer(c.out, info, c.sweep);
  ConsoleProgress progress(stderr, c.interactive.value_or(::isatty(STDERR_FILENO) != 0));
  AsyncObserver writer_thread(writer);  // HDF5 appends and flushes off the training loop
  ObserverList observers;
  observers.add(&writer_thread);
  observers.add(&progress);
  if (c.verbose) {
    std::fprintf(stderr, "lrfind_dist: %s on %s, %lld samples, %d thread(s), results -> %s\n", loaded.name.c_str(),
                 info.device.c_str(), static_cast<long long>(data.size()), threads, c.out.c_str());
  }

  finder::SweepContext context;
  context.observer = &observers;
  finder::SweepResult result;
  try {
    result = finder::runSweep(*loaded.model, *optimizer, batches, loss_fn, c.sweep, context);
  } catch (const CommError& e) {
    throw CommError(concat(e.what(), " (steps so far in ", writer.currentPath(), ")"));
  }

  if (!c.json.empty()) writeTextFile(c.json, renderJson(result, c.sweep, info, c.out), "--json");
  if (!c.plot.empty()) writeTextFile(c.plot, renderSvg(result, c.sweep, info), "--plot");

  const auto& chosen = result.suggestion();
  const std::string summary = renderSummary(result, c.sweep);
  if (c.print_lr) {
    std::fputs(summary.c_str(), stderr);
    if (chosen.found) std::printf("%.6g\n", chosen.lr);
  } else {
    std::fputs(summary.c_str(), stdout);
    std::printf("results: %s", c.out.c_str());
    if (!c.plot.empty()) std::printf(", plot: %s", c.plot.c_str());
    if (!c.json.empty()) std::printf(", summary: %s", c.json.c_str());
    std::printf("\n");
  }
  std::fflush(stdout);
  return kExitOk;
}

}  // namespace

int run(const RunConfig& config) {
  try {
    return runChecked(config);
  } catch (const InputError& e) {
    std::fprintf(stderr, "lrfind_dist: error: %s\n", e.what());
    return kExitUsage;
  } catch (const Error& e) {
    std::fprintf(stderr, "lrfind_dist: error: %s\n", e.what());
    return kExitFailure;
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "lrfind_dist: error (LibTorch): %s\n",
                 config.verbose ? e.what() : oneLine(e.what_without_backtrace()).c_str());
    return kExitFailure;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lrfind_dist: error: %s\n", config.verbose ? e.what() : oneLine(e.what()).c_str());
    return kExitFailure;
  }
}

std::string versionText() {
  return concat("lrfind ", LRFIND_VERSION, " (", LRFIND_BUILD_TYPE, ")\n",
                "  LibTorch ", TORCH_VERSION, ", CUDA ", torch::cuda::is_available() ? "available" : "not available",
                " at run time\n",
                "  HDF5 ", LRFIND_HDF5_VERSION, "\n",
                "  compiler ", LRFIND_CXX_COMPILER, "\n",
                "  communication backends: self\n");
}

}  // namespace lrfind::runtime
