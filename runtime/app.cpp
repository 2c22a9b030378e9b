#include "runtime/app.h"

#include <unistd.h>

#include <csignal>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>

#include <torch/cuda.h>
#include <torch/optim/optimizer.h>
#include <torch/utils.h>
#include <torch/version.h>

#include "comm/cuda_info.h"
#include "comm/errors.h"
#include "comm/mpi_environment.h"
#include "comm/staged_communicator.h"
#include "finder/sweep.h"
#include "lrfind/config.h"
#include "runtime/async_observer.h"
#include "runtime/batches.h"
#include "runtime/dataset.h"
#include "runtime/models.h"
#include "runtime/progress.h"
#include "runtime/report.h"
#include "runtime/results.h"
#include "runtime/signals.h"
#include "runtime/threads.h"
#include "runtime/world.h"

#if LRFIND_HAVE_NCCL
#include "comm/nccl_communicator.h"
#endif

namespace lrfind::runtime {
namespace {

// --device: auto = CUDA when LibTorch has it and a GPU is visible. On CUDA, node-local
// rank r takes visible GPU r mod count (with one GPU per rank through
// CUDA_VISIBLE_DEVICES, as srun --gpus-per-task does, every rank takes its GPU 0).
c10::Device resolveDevice(const std::string& name, int local_rank) {
  LRFIND_INPUT_CHECK(name == "auto" || name == "cpu" || name == "cuda", "--device must be auto, cpu or cuda; got \"",
                     name, "\"");
  if (name == "cpu") return c10::Device(c10::DeviceType::CPU);
  const bool usable = torch::cuda::is_available();
  if (name == "auto" && !usable) return c10::Device(c10::DeviceType::CPU);
  LRFIND_INPUT_CHECK(usable, "--device cuda: no usable CUDA GPU (",
                     LRFIND_TORCH_HAS_CUDA ? "none visible to this process; check CUDA_VISIBLE_DEVICES and the driver"
                                           : "this LibTorch was built without CUDA",
                     "); use --device cpu or auto");
  const auto gpus = static_cast<int>(torch::cuda::device_count());
  return c10::Device(c10::DeviceType::CUDA, static_cast<c10::DeviceIndex>(local_rank % gpus));
}

// Every rank's physical GPU, compared on rank 0: two ranks on one GPU need
// --allow-gpu-sharing (NCCL cannot put two ranks on one device). Collective; returns
// whether any GPU is shared, on every rank.
bool checkGpuSharing(comm::Communicator& comm, const c10::Device& device, const std::string& flag, bool allowed) {
  constexpr int64_t kKeyBytes = 128;
  std::string key;
  if (device.is_cuda()) {
    char host[64] = {0};
    ::gethostname(host, sizeof(host) - 1);
    std::string bus = comm::cudaDeviceBusId(device.index());
    if (bus.empty()) bus = concat("cuda:", static_cast<int>(device.index()));
    key = concat(host, " GPU ", bus).substr(0, kKeyBytes - 1);
  }
  at::Tensor mine = at::zeros({kKeyBytes}, at::kByte);
  std::memcpy(mine.data_ptr(), key.data(), key.size());
  at::Tensor all = comm.rank() == 0 ? at::zeros({comm.size() * kKeyBytes}, at::kByte) : at::Tensor();
  comm.gather(mine, all);
  at::Tensor shared = at::zeros({2}, at::kLong);  // {first rank, second rank} + 1 on one GPU
  std::string where;
  if (comm.rank() == 0) {
    std::map<std::string, int> owner;
    const auto* bytes = reinterpret_cast<const char*>(all.data_ptr());
    for (int r = 0; r < comm.size() && shared[0].item<int64_t>() == 0; ++r) {
      const std::string k(bytes + r * kKeyBytes);
      if (k.empty()) continue;
      const auto [it, fresh] = owner.emplace(k, r);
      if (!fresh) {
        shared[0] = it->second + 1;
        shared[1] = r + 1;
        where = k;
      }
    }
  }
  agreeOnSuccess(comm, [&] {
    if (comm.rank() != 0 || shared[0].item<int64_t>() == 0 || allowed) return;
    throw InputError(concat("--device ", flag, ": ranks ",
                            shared[0].item<int64_t>() - 1, " and ", shared[1].item<int64_t>() - 1, " would share ",
                            where, " (more ranks on a node than GPUs visible to them); start one rank per GPU, "
                            "pass --allow-gpu-sharing (slower: gradients go through host memory), or use --device cpu"));
  });
  comm.broadcast(shared);
  return shared[0].item<int64_t>() != 0;
}

// The communicator for the model's tensors: none needed on CPU or in a world of one;
// NCCL for one GPU per rank; host staging over MPI when ranks share a GPU.
std::unique_ptr<comm::Communicator> makeTensorComm(comm::Communicator& control, const c10::Device& device,
                                                   bool gpu_shared, double timeout_s) {
  if (!device.is_cuda() || control.size() == 1) return nullptr;
  if (gpu_shared) return std::make_unique<comm::StagedCommunicator>(control);
#if LRFIND_HAVE_NCCL
  comm::NcclOptions options;
  options.device = device.index();
  options.timeout = std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
  return std::make_unique<comm::NcclCommunicator>(control, options);
#else
  (void)timeout_s;
  // The same on every rank (a property of this build): agreed without talking.
  throw Agreed<InputError>(concat("--device cuda with ", control.size(),
                          " ranks averages gradients with NCCL, and this build has none (configure with "
                          "-DLRFIND_WITH_NCCL=ON and NCCL_HOME set); or use --device cpu"));
#endif
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

// LRFIND_FAULT_INJECT=<rank>:<step> makes that rank throw before that step's forward
// pass; <rank>:<step>:kill makes it kill itself with SIGKILL there (a rank dying
// outright). How the tests, and users checking their cluster setup, exercise the fault
// paths at an exact step.
finder::StepHook faultInjection(int rank) {
  const char* spec = std::getenv("LRFIND_FAULT_INJECT");
  if (spec == nullptr) return {};
  int fault_rank = -1;
  long long fault_step = -1;
  char kind[8] = {0};
  const int fields = std::sscanf(spec, "%d:%lld:%7s", &fault_rank, &fault_step, kind);
  const bool kill = fields == 3 && std::string(kind) == "kill";
  LRFIND_INPUT_CHECK(fields == 2 || kill, "LRFIND_FAULT_INJECT must be <rank>:<step> or <rank>:<step>:kill, got \"",
                     spec, "\"");
  if (fault_rank != rank) return {};
  return [fault_step, kill](int64_t step) {
    if (step != fault_step) return;
    if (kill) ::raise(SIGKILL);
    throw std::runtime_error("fault injected by LRFIND_FAULT_INJECT");
  };
}

// This process's rank once the world exists: errors every rank agreed on are printed
// by rank 0 only.
int g_world_rank = 0;
int g_world_size = 1;

// Everything the sweep needs on this rank, built in two agreed phases.
struct Setup {
  c10::Device device{c10::DeviceType::CPU};
  BatchPlan plan;
  Dataset data;
  finder::LossFn loss_fn;
  int64_t num_outputs = 0;
  LoadedModel loaded;
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  std::unique_ptr<ShardedBatches> batches;
  RunInfo info;
};

}  // namespace

void validate(const RunConfig& c) {
  finder::validate(c.sweep);
  LRFIND_INPUT_CHECK(c.batch_size >= 1, "--batch-size must be >= 1, got ", c.batch_size);
  LRFIND_INPUT_CHECK(c.threads >= 0, "--threads must be >= 0, got ", c.threads);
  LRFIND_INPUT_CHECK(c.bucket_mb > 0, "--bucket-mb must be > 0, got ", c.bucket_mb);
  LRFIND_INPUT_CHECK(c.comm_timeout_s > 0, "--comm-timeout must be > 0 seconds, got ", c.comm_timeout_s);
}

namespace {

int runChecked(const RunConfig& c) {
  // Flag checks fail the same way on every rank: agreed without talking.
  try {
    validate(c);
  } catch (const InputError& e) {
    throw Agreed<InputError>(e.what());
  }

  World world(c.backend);
  g_world_rank = world.rank();
  g_world_size = world.size();
  const bool root = world.rank() == 0;
  const int64_t usable = c.sweep.num_training - c.sweep.skip_begin - c.sweep.skip_end;
  if (usable < 2 && root) {
    std::fprintf(stderr,
                 "lrfind_dist: warning: --skip-begin %lld + --skip-end %lld leave %lld of %lld points for the "
                 "suggestion; there will be none\n",
                 static_cast<long long>(c.sweep.skip_begin), static_cast<long long>(c.sweep.skip_end),
                 static_cast<long long>(std::max<int64_t>(usable, 0)), static_cast<long long>(c.sweep.num_training));
  }
  const int threads = c.threads > 0 ? c.threads : world.defaultThreads();
  setComputeThreads(threads);

  Setup s;
  s.plan.batch_size = c.batch_size;
  s.plan.shuffle = c.shuffle;
  s.plan.seed = c.seed;
  s.plan.rank = world.rank();
  s.plan.world = world.size();
  // Phase 1: outputs (rank 0 writes them), device, data, targets.
  agreeOnSuccess(world.comm(), [&] {
    if (root) {
      checkOutputPath(c.out, c.force, "--out");
      if (!c.json.empty()) checkOutputPath(c.json, c.force, "--json");
      if (!c.plot.empty()) checkOutputPath(c.plot, c.force, "--plot");
    }
    s.device = resolveDevice(c.device, world.localRank());
    s.loss_fn = makeLoss(c.loss);
    const int64_t batches_needed = c.sweep.num_training * c.sweep.accumulate;
    const auto synthetic = syntheticSpec(c.data);
    s.data = synthetic ? makeSynthetic(c.seed, *synthetic)
                 : loadHdf5(c.data, c.x_key, c.y_key,
                            [&](int64_t samples) { return rowsUsed(samples, s.plan, batches_needed); });
    s.num_outputs = checkTargets(c, s.data);
    s.batches = std::make_unique<ShardedBatches>(s.data, s.plan, s.device);
  });
  const bool gpu_shared = checkGpuSharing(world.comm(), s.device, c.device, c.allow_gpu_sharing);
  std::unique_ptr<comm::Communicator> tensor_comm =
      makeTensorComm(world.comm(), s.device, gpu_shared, c.comm_timeout_s);
  if (s.data.has_labels && world.size() > 1) {
    // Each rank saw only its rows: the model is sized by the largest label anywhere.
    at::Tensor classes = at::full({1}, s.num_outputs, at::kLong);
    world.comm().allreduce(classes, comm::AllreduceOptions{comm::ReduceOp::kMax});
    s.num_outputs = classes.item<int64_t>();
  }
  // Phase 2: model, a dry forward pass against the data, optimizer.
  agreeOnSuccess(world.comm(), [&] {
    s.loaded = loadModel(c.model, s.data, s.num_outputs, c.seed, s.device);
    checkOutput(dryForward(*s.loaded.model, s.loaded.name, s.data, s.device), c, s.data, s.loaded.name);
    OptimizerConfig opt = c.optimizer;
    opt.lr = c.sweep.min_lr;
    s.optimizer = makeOptimizer(s.loaded.model->parameters(), opt);
  });

  RunInfo& info = s.info;
  info.model = s.loaded.name;
  info.data = s.data.source;
  info.optimizer = c.optimizer.name;
  info.loss_fn = c.loss;
  info.device = s.device.str();
  info.batch_size = c.batch_size;
  info.global_batch_size = c.batch_size * world.size() * c.sweep.accumulate;
  info.seed = static_cast<int64_t>(c.seed);
  info.world_size = world.size();
  info.config = c.config_text;

  // From here on SIGINT/SIGTERM stop the sweep after the current step, on every rank,
  // and leave the steps done in <out>.partial.
  InterruptHandler interrupts;
  // Rank 0 records; the others only train.
  std::unique_ptr<ResultsWriter> writer;
  std::unique_ptr<AsyncObserver> writer_thread;  // HDF5 appends and flushes off the training loop
  std::unique_ptr<ConsoleProgress> progress;
  ObserverList observers;
  agreeOnSuccess(world.comm(), [&] {
    if (!root) return;
    writer = std::make_unique<ResultsWriter>(c.out, info);
    writer_thread = std::make_unique<AsyncObserver>(*writer);
    progress = std::make_unique<ConsoleProgress>(stderr, c.interactive.value_or(::isatty(STDERR_FILENO) != 0));
    observers.add(writer_thread.get());
    observers.add(progress.get());
  });
  if (c.verbose) {
    std::fprintf(stderr, "lrfind_dist: rank %d/%d (local %d/%d, %s, gradients %s): %s on %s, %lld of %lld samples read, %d thread(s)\n",
                 world.rank(), world.size(), world.localRank(), world.localSize(), world.comm().name().c_str(),
                 tensor_comm ? tensor_comm->name().c_str() : world.comm().name().c_str(),
                 s.loaded.name.c_str(), info.device.c_str(), static_cast<long long>(s.data.size()),
                 static_cast<long long>(s.data.totalSamples()), threads);
  }

  finder::SweepContext context;
  context.comm = &world.comm();
  context.tensor_comm = tensor_comm.get();
  context.observer = root ? &observers : nullptr;
  context.bucket_bytes = static_cast<std::size_t>(c.bucket_mb * 1024 * 1024);
  context.check_consistency = c.check_consistency;
  context.before_step = faultInjection(world.rank());
  context.interrupted = [] { return InterruptHandler::received() != 0; };
  finder::SweepResult result;
  try {
    result = finder::runSweep(*s.loaded.model, *s.optimizer, *s.batches, s.loss_fn, c.sweep, context);
  } catch (const CommError& e) {
    if (writer) throw Agreed<CommError>(concat(e.what(), " (steps so far in ", writer->currentPath(), ")"));
    throw;
  }
  if (result.stop_reason == finder::StopReason::kInterrupted) {
    const int sig = InterruptHandler::received();
    if (root) {
      std::fprintf(stderr, "lrfind_dist: interrupted (%s) after %lld steps; they are in %s (complete=0)\n",
                   sig != 0 ? strsignal(sig) : "a signal on another rank",
                   static_cast<long long>(result.stepsCompleted()), writer->currentPath().c_str());
    }
    return 128 + (sig != 0 ? sig : SIGTERM);
  }
  if (!root) return kExitOk;

  if (!c.json.empty()) writeTextFile(c.json, renderJson(result, c.sweep, info, c.out), "--json");
  if (!c.plot.empty()) writeTextFile(c.plot, renderSvg(result, c.sweep, info), "--plot");

  const auto& chosen = result.suggestion();
  std::string summary = renderSummary(result, c.sweep);
  // In a batch log (not a terminal) the curve comes along as text: no files to copy.
  if (::isatty(c.print_lr ? STDERR_FILENO : STDOUT_FILENO) == 0) summary += renderTextPlot(result, c.sweep);
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
  // One line per failure. A failure all ranks agreed on is reported by rank 0 alone (its
  // text names the failing rank); a failure of one rank says which rank it is.
  const LauncherInfo launcher = detectLauncher();
  g_world_rank = std::max(0, launcher.rank);  // the launcher's word until MPI's
  g_world_size = std::max(1, launcher.size);
  auto report = [](const std::exception& e, const char* kind, const std::string& text) {
    if (isAgreed(e)) {
      if (g_world_rank == 0) std::fprintf(stderr, "lrfind_dist: error%s: %s\n", kind, text.c_str());
    } else if (g_world_size > 1) {
      std::fprintf(stderr, "lrfind_dist: error%s: rank %d: %s\n", kind, g_world_rank, text.c_str());
    } else {
      std::fprintf(stderr, "lrfind_dist: error%s: %s\n", kind, text.c_str());
    }
  };
  try {
    return runChecked(config);
  } catch (const InputError& e) {
    report(e, "", e.what());
    return kExitUsage;
  } catch (const Error& e) {
    report(e, "", e.what());
    return kExitFailure;
  } catch (const c10::Error& e) {
    report(e, " (LibTorch)", config.verbose ? e.what() : oneLine(e.what_without_backtrace()));
    return kExitFailure;
  } catch (const std::exception& e) {
    report(e, "", config.verbose ? e.what() : oneLine(e.what()));
    return kExitFailure;
  }
}

std::string versionText() {
  return concat("lrfind ", LRFIND_VERSION, " (", LRFIND_BUILD_TYPE, ")\n",
                "  LibTorch ", TORCH_VERSION, " (", LRFIND_TORCH_HAS_CUDA ? "with" : "without",
                " CUDA; a GPU is ", torch::cuda::is_available() ? "" : "not ", "usable now)\n",
                "  CUDA toolkit ", LRFIND_HAVE_CUDA_TOOLKIT ? LRFIND_CUDA_TOOLKIT_VERSION : "not found", ", NCCL ",
                LRFIND_HAVE_NCCL ? LRFIND_NCCL_VERSION : "not found", " at build time",
#if LRFIND_HAVE_NCCL
                " (NCCL library now: ", comm::ncclRuntimeVersion(), ")",
#endif
                "\n  GPUs visible now: ", comm::cudaVisibleDevices(), "\n",
                "  MPI: ", comm::MpiEnvironment::libraryVersion(), " (MPI ", LRFIND_MPI_VERSION, ")\n",
                "  HDF5 ", LRFIND_HDF5_VERSION, ", compiler ", LRFIND_CXX_COMPILER, "\n",
                "  communication backends: self, mpi", LRFIND_HAVE_NCCL ? ", nccl" : "", " (and MPI with host staging "
                "for shared GPUs)\n");
}

}  // namespace lrfind::runtime
