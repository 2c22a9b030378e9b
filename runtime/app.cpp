#include "runtime/app.h"

#include <unistd.h>

#include <csignal>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <optional>
#include <tuple>

#include <torch/cuda.h>
#include <torch/optim/optimizer.h>
#include <torch/utils.h>
#include <torch/version.h>

#include "comm/agreement.h"
#include "comm/mpi_communicator.h"
#include "comm/mpi_environment.h"
#include "common/error.h"
#include "finder/sweep.h"
#include "lrfind/config.h"
#include "runtime/async_observer.h"
#include "runtime/batches.h"
#include "runtime/dataset.h"
#include "runtime/grid_report.h"
#include "runtime/grid_run.h"
#include "runtime/grid_summary.h"
#include "runtime/models.h"
#include "runtime/param_groups.h"
#include "runtime/placement.h"
#include "runtime/progress.h"
#include "runtime/report.h"
#include "runtime/results.h"
#include "runtime/signals.h"
#include "runtime/threads.h"
#include "runtime/torch_message.h"
#include "runtime/world.h"


namespace lrfind::runtime {

std::string flagName(const char* field) {
  std::string flag = concat("--", field);
  std::replace(flag.begin(), flag.end(), '_', '-');
  return flag;
}

namespace {

// How long non-root ranks wait past --comm-timeout for rank 0 to report a stall first.
constexpr std::chrono::milliseconds kRootGrace = std::chrono::seconds(5);

// "MEAN,...:STD,..." of --normalize, "" without it.
std::string describeNormalize(const RunConfig& c) {
  if (c.normalize_mean.empty()) return "";
  auto list = [](const std::vector<double>& v) {
    std::string text;
    for (const double x : v) text += concat(text.empty() ? "" : ",", x);
    return text;
  };
  return concat(list(c.normalize_mean), ":", list(c.normalize_std));
}

// The loss and the targets must fit each other, and the model's output both.
int64_t checkTargets(const RunConfig& c, const Dataset& data) {
  // Where the targets are: "--data d.h5 ('y')" or "--labels l.h5:y".
  const std::string where = data.labels_source.empty() ? concat(data.flag, " ", data.source, " ('", c.y_key, "')")
                                                       : concat(data.labels_flag, " ", data.labels_source);
  if (lossTakesLabels(c.loss)) {
    LRFIND_INPUT_CHECK(data.has_labels, "--loss ", c.loss, " needs integer class labels, but ", where,
                       " has float targets; use --loss mse, l1, smooth_l1 or bce_with_logits, or store integer labels");
    return data.numClasses();
  }
  LRFIND_INPUT_CHECK(!data.has_labels, "--loss ", c.loss, " needs float targets, but ", where,
                     " has integer class labels; use --loss cross_entropy or nll, or store float targets");
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
                       out.numel() / out.size(0), " values per sample but the targets in ", data.flag, " ",
                       data.source, " have ", per_sample);
  }
}

// LRFIND_FAULT_INJECT=<rank>:<step>[:kill|:stall] makes that rank fail before that
// step's forward pass: throw an exception (the default), kill itself with SIGKILL (a rank
// dying outright), or stop itself with SIGSTOP (a hung GPU, a stuck file system, a frozen
// node). <step> "start" fails during set-up instead, before the model loads. How the
// tests, and users checking their cluster setup, exercise the fault paths at an exact
// place.
struct Fault {
  int rank = -1;
  int64_t step = -1;  // -1: at start
  std::string kind = "throw";
};

// Every rank reads the same variable: a bad one is an agreed error without talking.
std::optional<Fault> faultToInject() {
  const char* spec = std::getenv("LRFIND_FAULT_INJECT");
  if (spec == nullptr) return std::nullopt;
  Fault f;
  char where[24] = {0}, kind[8] = {0};
  const int fields = std::sscanf(spec, "%d:%23[^:]:%7s", &f.rank, where, kind);
  char* end = nullptr;
  const long long step = std::strtoll(where, &end, 10);
  const bool at_start = std::string(where) == "start";
  if (fields == 3) f.kind = kind;
  if (fields < 2 || (!at_start && (end == where || *end != '\0' || step < 0)) ||
      (f.kind != "throw" && f.kind != "kill" && f.kind != "stall")) {
    throw comm::Agreed<InputError>(concat("LRFIND_FAULT_INJECT must be <rank>:<step|start>[:throw|:kill|:stall], got \"",
                                          spec, "\""));
  }
  f.step = at_start ? -1 : step;
  return f;
}

void inject(const Fault& f) {
  if (f.kind == "kill") ::raise(SIGKILL);
  if (f.kind == "stall") {
    ::raise(SIGSTOP);
    return;  // continued (SIGCONT): carry on as if nothing happened
  }
  throw std::runtime_error("fault injected by LRFIND_FAULT_INJECT");
}

// The hook that injects `fault` at its step on its rank.
// In a grid the step counts this rank's steps over all its sweeps: `steps_before` (the
// caller's, alive while the hook is) holds those of the sweeps before this one.
finder::StepHook stepFault(const std::optional<Fault>& fault, int rank, const int64_t* steps_before = nullptr) {
  if (!fault || fault->rank != rank || fault->step < 0) return {};
  return [f = *fault, steps_before](int64_t step) {
    if ((steps_before != nullptr ? *steps_before : 0) + step == f.step) inject(f);
  };
}

// This process's rank once the world exists: errors every rank agreed on are printed
// by rank 0 only.
int g_world_rank = 0;
int g_world_size = 1;

// The ranks that run a sweep together: the world, or a tuning grid's rank group.
struct Team {
  comm::Communicator& comm;
  int local_rank = 0;  // on its node, among the world's ranks there (picks the GPU)
  int local_size = 1;  // ranks of this team on this node
  int rank() const { return comm.rank(); }
  int size() const { return comm.size(); }
};

Team worldTeam(World& world) { return Team{world.comm(), world.localRank(), world.localSize()}; }

// Everything the sweep needs on this rank, built in agreed phases.
struct Setup {
  c10::Device device{c10::DeviceType::CPU};
  std::string data_key;  // what loadSweepData() loaded `data` for
  BatchPlan plan;
  Dataset data;
  finder::LossFn loss_fn;
  int64_t num_outputs = 0;
  std::unique_ptr<comm::Communicator> tensor_comm;  // nullptr: the world's communicator
  LoadedModel loaded;
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  std::vector<ParamGroupInfo> param_groups;  // the optimizer's groups
  std::unique_ptr<ShardedBatches> batches;
  // Validation mode: --val-data's rows of this rank (--val-fraction's are in `data`), and
  // this rank's share of the held-out rows; nullptr without validation.
  std::string val_key;  // what loadValidation() loaded `val_data` for
  Dataset val_data;
  std::unique_ptr<EvalBatches> validation;
  int64_t val_samples = 0;  // held-out samples evaluated, over every rank
  std::string val_source;   // RunInfo::val_data
  RunInfo info;
};

// Rank 0's view of the sweep as it goes: the results file (written off the training
// loop) and the console progress. Empty on the other ranks.
struct Recording {
  std::unique_ptr<ResultsWriter> writer;
  std::unique_ptr<AsyncObserver> writer_thread;
  std::unique_ptr<ConsoleProgress> progress;
  finder::ObserverList observers;
};

// A tuning grid as every rank plans it, from the flags alone.
struct GridRun {
  std::vector<GridPoint> points;
  std::vector<RunConfig> configs;  // each sweep's flags
  std::vector<int> group_of;       // each sweep's rank group (sweepGroups)
  int ranks_per_sweep = 1;
  int groups = 1;
};

// Flag checks fail the same way on every rank: agreed without talking. With a grid the
// checks are every sweep's (the shared flags alone are no sweep), and `grid` gets the plan.
void validateAgreed(const RunConfig& c, int world_size, GridRun* grid) {
  try {
    if (c.grid.empty()) {
      validate(c);
      return;
    }
    const int per_sweep = c.ranks_per_sweep > 0 ? c.ranks_per_sweep : world_size;
    LRFIND_INPUT_CHECK(per_sweep <= world_size && world_size % per_sweep == 0, "--ranks-per-sweep ", per_sweep,
                       " must divide the ", world_size, " rank(s) of this job into equal groups");
    LRFIND_CHECK(c.grid_point_config != nullptr, "RunConfig::grid_point_config must be set to run a grid");
    grid->points = gridPoints(c.grid);
    std::vector<double> costs;
    for (const auto& point : grid->points) {
      RunConfig pc = c.grid_point_config(point);
      try {
        validate(pc);
      } catch (const InputError& e) {
        throw InputError(concat("--grid ", describeGridPoint(point), ": ", e.what()));
      }
      costs.push_back(sweepCost(pc.sweep.num_training, pc.batch_size, pc.sweep.accumulate));
      grid->configs.push_back(std::move(pc));
    }
    grid->ranks_per_sweep = per_sweep;
    grid->groups = world_size / per_sweep;
    grid->group_of = sweepGroups(costs, grid->groups);
  } catch (const InputError& e) {
    throw comm::Agreed<InputError>(e.what());
  }
}

void warnIfNoSuggestion(const RunConfig& c) {
  const int64_t usable = c.sweep.num_training - c.sweep.skip_begin - c.sweep.skip_end;
  if (usable >= 2) return;
  std::fprintf(stderr,
               "lrfind_dist: warning: --skip-begin %lld + --skip-end %lld leave %lld of %lld points for the "
               "suggestion; there will be none\n",
               static_cast<long long>(c.sweep.skip_begin), static_cast<long long>(c.sweep.skip_end),
               static_cast<long long>(std::max<int64_t>(usable, 0)), static_cast<long long>(c.sweep.num_training));
}

void checkOutputs(const RunConfig& c) {
  checkOutputPath(c.out, c.force, "--out");
  if (!c.json.empty()) checkOutputPath(c.json, c.force, "--json");
  if (!c.plot.empty()) checkOutputPath(c.plot, c.force, "--plot");
}

int64_t globalBatch(const RunConfig& c, const Team& team) {
  return c.batch_size * team.size() * c.sweep.accumulate;
}

// The rows of --data that train: all `n`, or the first ones when --val-fraction holds out
// the rest. Throws InputError when either part is too small.
int64_t trainingRows(const RunConfig& c, const Team& team, int64_t n) {
  if (c.val_fraction <= 0) return n;
  const int64_t held = heldOutRows(n, c.val_fraction);
  LRFIND_INPUT_CHECK(held >= team.size(), "--val-fraction ", c.val_fraction, " holds out ", held, " of the ", n,
                     " rows of --data ", c.data, ", fewer than the ", team.size(),
                     " rank(s) that evaluate them; raise it");
  LRFIND_INPUT_CHECK(n - held >= globalBatch(c, team), "--val-fraction ", c.val_fraction, " leaves ", n - held,
                     " of the ", n, " rows of --data ", c.data, " to train on, fewer than one global batch (",
                     globalBatch(c, team), "); lower it or --batch-size");
  return n - held;
}

// How many of `held` held-out rows each evaluation takes: the first --val-batches global
// batches, or all.
int64_t rowsEvaluated(const RunConfig& c, const Team& team, int64_t held) {
  return c.val_batches > 0 ? std::min(held, c.val_batches * globalBatch(c, team)) : held;
}

// "[3, 32, 32]": the shape of one sample as the model sees it.
std::string sampleShape(const Dataset& data) {
  std::string text;
  for (int64_t d = 1; d < data.x.dim(); ++d) text += concat(text.empty() ? "" : ", ", data.x.size(d));
  return "[" + text + "]";
}

// What --data (or --val-data) names, read with the data flags.
DataSource dataSource(const RunConfig& c, const Team& team, const std::string& path, const std::string& labels,
                      const std::string& flag) {
  DataSource src;
  src.path = path;
  src.flag = flag;
  src.labels_flag = flag == "--data" ? "--labels" : "--val-labels";
  src.x_key = c.x_key;
  src.y_key = c.y_key;
  std::tie(src.labels_path, src.labels_key) = splitLabelsArgument(labels);
  src.input_scale = c.input_scale;
  src.mean = c.normalize_mean;
  src.std = c.normalize_std;
  src.channels_last = c.channels_last;
  // Rank 0 tells when the read takes a while (every rank reads about as much).
  if (team.rank() == 0) src.progress = consoleReadProgress(stderr, concat(flag, " ", path), ::isatty(STDERR_FILENO));
  return src;
}

// Validation mode: this rank's share of the held-out rows (of `data` with --val-fraction,
// else of --val-data, whose inputs and targets must look like --data's). Not agreed.
void loadValidation(const RunConfig& c, const Team& team, Setup& s) {
  s.validation.reset();
  if (c.val_fraction > 0) {
    const int64_t n = s.data.totalSamples();
    const int64_t first = trainingRows(c, team, n);
    s.val_samples = rowsEvaluated(c, team, n - first);
    s.val_source = concat(s.data.source, " rows ", first, "-", n - 1, " (--val-fraction ", c.val_fraction, ")");
    s.validation = std::make_unique<EvalBatches>(s.data, evalRows(first, s.val_samples, team.rank(), team.size()),
                                                 c.batch_size, s.device);
    return;
  }
  if (c.val_data.empty()) return;
  const std::string key = concat(s.data_key, "|", c.val_data, "|", c.val_labels);
  if (key != s.val_key) {
    s.val_key.clear();
    s.val_data = loadHdf5(dataSource(c, team, c.val_data, c.val_labels, "--val-data"), [&](int64_t samples) {
      LRFIND_INPUT_CHECK(samples >= team.size(), "--val-data ", c.val_data, " holds ", samples,
                         " samples, fewer than the ", team.size(), " rank(s) that evaluate them");
      s.val_samples = rowsEvaluated(c, team, samples);
      return evalRows(0, s.val_samples, team.rank(), team.size());
    });
    s.val_key = key;
  }
  const Dataset& val = s.val_data;
  LRFIND_INPUT_CHECK(sampleShape(val) == sampleShape(s.data), "--val-data ", c.val_data, " has samples of shape ",
                     sampleShape(val), " but --data ", s.data.source, " has ", sampleShape(s.data),
                     "; they must match");
  const int64_t outputs = checkTargets(c, val);
  if (val.has_labels) {
    s.num_outputs = std::max(s.num_outputs, outputs);
  } else {
    LRFIND_INPUT_CHECK(outputs == s.num_outputs, "--val-data ", c.val_data, " has ", outputs,
                       " target values per sample but --data ", s.data.source, " has ", s.num_outputs);
  }
  s.val_source = val.source;
  s.validation = std::make_unique<EvalBatches>(val, evalRows(0, s.val_samples, team.rank(), team.size()),
                                               c.batch_size, s.device);
}

// This rank's rows of the data and its batches, not agreed: the caller agrees. The data
// already loaded stays when the sweep would read the same rows (a grid's sweeps that
// differ only in the optimizer). With --val-fraction the held-out rows this rank
// evaluates are read with its training rows.
void loadSweepData(const RunConfig& c, const Team& team, Setup& s) {
  s.plan.batch_size = c.batch_size;
  s.plan.shuffle = c.shuffle;
  s.plan.seed = c.seed;
  s.plan.rank = team.rank();
  s.plan.world = team.size();
  s.loss_fn = makeLoss(c.loss);
  const int64_t batches_needed = c.sweep.num_training * c.sweep.accumulate;
  const std::string key = concat(c.data, "|", c.x_key, "|", c.y_key, "|", c.labels, "|", c.seed, "|", c.batch_size,
                                 "|", c.shuffle, "|", batches_needed, "|", c.input_scale.value_or(0), "|",
                                 describeNormalize(c), "|", c.channels_last, "|", c.val_fraction, "|", c.val_batches);
  if (key != s.data_key) {
    s.data_key.clear();
    const auto synthetic = syntheticSpec(c.data);
    if (synthetic) {
      LRFIND_INPUT_CHECK(c.labels.empty() && !c.input_scale && c.normalize_mean.empty() && !c.channels_last,
                         "--labels, --input-scale, --normalize and --channels-last apply to an HDF5 --data file, "
                         "not to the built-in set '", c.data, "'");
      s.data = makeSynthetic(c.seed, *synthetic);
    } else {
      s.data = loadHdf5(dataSource(c, team, c.data, c.labels, "--data"), [&](int64_t samples) {
        const int64_t train = trainingRows(c, team, samples);
        std::vector<int64_t> rows = rowsUsed(train, s.plan, batches_needed, c.data);
        if (train < samples) {  // the held-out rows follow every training row: still sorted
          const auto held = evalRows(train, rowsEvaluated(c, team, samples - train), team.rank(), team.size());
          rows.insert(rows.end(), held.begin(), held.end());
        }
        return rows;
      });
    }
    s.data_key = key;
  }
  s.num_outputs = checkTargets(c, s.data);
  s.batches = std::make_unique<ShardedBatches>(s.data, s.plan, s.device, trainingRows(c, team, s.data.totalSamples()));
  loadValidation(c, team, s);
}

// Each rank saw only its rows: the model is sized by the largest label anywhere.
void agreeOnClasses(const Team& team, Setup& s) {
  if (!s.data.has_labels || team.size() == 1) return;
  at::Tensor classes = at::full({1}, s.num_outputs, at::kLong);
  team.comm.allreduce(classes, comm::AllreduceOptions{comm::ReduceOp::kMax});
  s.num_outputs = classes.item<int64_t>();
}

// Phase 1, agreed: the output paths (rank 0 writes them), the device, the data and its
// targets. Then the placement checks and the tensor communicator.
void prepareData(const RunConfig& c, World& world, Setup& s) {
  const Team team = worldTeam(world);
  comm::agreeOnSuccess(world.comm(), [&] {
    if (world.rank() == 0) checkOutputs(c);
    s.device = resolveDevice(c.device, world.localRank());
    LRFIND_INPUT_CHECK(c.sweep.precision != finder::Precision::kFp16 || s.device.is_cuda(),
                       "--precision fp16 needs a CUDA device (LibTorch has no float16 autocast on CPU); on ",
                       s.device.str(), " use --precision bf16");
    useDevice(s.device);
    loadSweepData(c, team, s);
  });
  const bool gpu_shared = checkGpuSharing(world.comm(), s.device, c.device, c.allow_gpu_sharing);
  s.tensor_comm = makeTensorComm(world.comm(), s.device, gpu_shared);
  agreeOnClasses(team, s);
}

// The optimizer over the model's param groups, each starting at its multiple of --min-lr.
// Without --param-group and --no-decay-bias-norm: one group of every parameter, in the
// model's order, as always.
void makeGroupedOptimizer(const RunConfig& c, Setup& s) {
  std::vector<ParamGroupSpec> specs;
  for (const auto& text : c.param_groups) specs.push_back(parseParamGroup(text));
  const auto named = s.loaded.model->namedParameters();
  std::vector<ParamGroup> groups;
  if (specs.empty() && !c.no_decay_bias_norm) {
    ParamGroup all;
    all.params = s.loaded.model->parameters();
    all.info.weight_decay = weightDecay(c.optimizer);
    for (const auto& p : named) all.info.names.push_back(p.name);
    for (const auto& p : all.params) all.info.numel += p.numel();
    groups.push_back(std::move(all));
  } else {
    groups = planParamGroups(named, specs, c.no_decay_bias_norm, weightDecay(c.optimizer));
  }
  std::vector<OptimizerGroup> optimizer_groups;
  s.param_groups.clear();
  for (auto& g : groups) {
    const bool own_decay = g.info.weight_decay != weightDecay(c.optimizer);
    optimizer_groups.push_back({std::move(g.params), c.sweep.min_lr * g.info.multiplier,
                                own_decay ? std::optional<double>(g.info.weight_decay) : std::nullopt});
    s.param_groups.push_back(std::move(g.info));
  }
  s.optimizer = makeOptimizer(optimizer_groups, c.optimizer);
}

// Phase 2, agreed: the model, a dry forward pass against the data, the optimizer.
void prepareModel(const RunConfig& c, const Team& team, int world_rank, Setup& s, const std::optional<Fault>& fault) {
  comm::agreeOnSuccess(team.comm, [&] {
    if (fault && fault->step < 0 && fault->rank == world_rank) inject(*fault);
    s.loaded = loadModel(c.model, s.data, s.num_outputs, c.seed, s.device, c.output);
    const at::Tensor out = dryForward(*s.loaded.model, s.loaded.name, s.data, s.device);
    checkOutput(out, c, s.data, s.loaded.name);
    if (!c.val_data.empty()) checkOutput(out, c, s.val_data, s.loaded.name);
    makeGroupedOptimizer(c, s);
  });
}

RunInfo describeRun(const RunConfig& c, const Team& team, const Setup& s) {
  RunInfo info;
  info.model = s.loaded.name;
  info.data = s.data.source;
  info.optimizer = c.optimizer.name;
  info.loss_fn = c.loss;
  info.device = s.device.str();
  info.labels = s.data.labels_source;
  info.input_type = s.data.input_type;
  info.input_scale = s.data.transform.scale;
  info.normalize = describeNormalize(c);
  info.channels_last = s.data.transform.channels_last;
  info.batch_size = c.batch_size;
  info.global_batch_size = globalBatch(c, team);
  info.param_groups = s.param_groups;
  if (s.validation) {
    info.val_data = s.val_source;
    info.val_labels = s.val_data.labels_source;
    info.val_samples = s.val_samples;
    info.val_batches = c.val_batches;
  }
  info.seed = static_cast<int64_t>(c.seed);
  info.world_size = team.size();
  info.config = c.config_text;
  return info;
}

// Agreed: rank 0 opens the results file and the console progress.
Recording startRecording(const RunConfig& c, World& world, const RunInfo& info) {
  Recording r;
  comm::agreeOnSuccess(world.comm(), [&] {
    if (world.rank() != 0) return;
    r.writer = std::make_unique<ResultsWriter>(c.out, info);
    r.writer_thread = std::make_unique<AsyncObserver>(*r.writer);
    r.progress = std::make_unique<ConsoleProgress>(stderr, c.interactive.value_or(::isatty(STDERR_FILENO) != 0));
    r.observers.add(r.writer_thread.get());
    r.observers.add(r.progress.get());
  });
  return r;
}

void logPlacement(World& world, const Setup& s, int threads) {
  const comm::Communicator& control = world.comm();
  std::fprintf(stderr, "lrfind_dist: rank %d/%d (local %d/%d, %s, gradients %s): %s on %s, %lld of %lld samples "
               "read, %d thread(s)\n",
               world.rank(), world.size(), world.localRank(), world.localSize(), control.name().c_str(),
               s.tensor_comm ? s.tensor_comm->name().c_str() : control.name().c_str(), s.loaded.name.c_str(),
               s.info.device.c_str(), static_cast<long long>(s.data.size()),
               static_cast<long long>(s.data.totalSamples()), threads);
}

// One sweep on `team`. Rank 0 of the team reports to `observer`; `steps_file` names
// where its steps are for an error message ("" where none).
finder::SweepResult sweep(const RunConfig& c, const Team& team, Setup& s, finder::SweepObserver* observer,
                          finder::StepHook before_step, std::function<bool()> interrupted,
                          const std::string& steps_file) {
  finder::SweepContext context;
  context.comm = &team.comm;
  context.tensor_comm = s.tensor_comm.get();
  context.observer = team.rank() == 0 ? observer : nullptr;
  context.averaging.bucket_bytes = static_cast<std::size_t>(c.bucket_mb * 1024 * 1024);
  context.averaging.overlap = c.overlap;
  context.averaging.shared_memory = c.shared_memory;
  // With --verbose always; else only when ranks on one node could not use shared memory
  // (a fallback the user should hear of; across nodes messages are the plan).
  const bool one_node = team.local_size == team.size();
  context.on_averaging = [verbose = c.verbose, one_node](const std::string& how, const std::string& no_shm) {
    if (verbose || (one_node && !no_shm.empty())) std::fprintf(stderr, "lrfind_dist: gradients: %s\n", how.c_str());
  };
  context.check_consistency = c.check_consistency;
  context.validation = s.validation.get();
  for (const auto& g : s.param_groups) context.lr_multipliers.push_back(g.multiplier);
  context.before_step = std::move(before_step);
  context.interrupted = std::move(interrupted);
  context.option_name = flagName;
  try {
    return finder::runSweep(*s.loaded.model, *s.optimizer, *s.batches, s.loss_fn, c.sweep, context);
  } catch (const comm::CommTimeout&) {
    throw;  // not agreed: a peer may be gone (endAfterTimeout)
  } catch (const CommError& e) {
    if (!steps_file.empty()) throw comm::Agreed<CommError>(concat(e.what(), " (steps so far in ", steps_file, ")"));
    throw;
  }
}

bool signalled() { return InterruptHandler::received() != 0; }

// Every rank stopped at the same step after a signal; the exit code says which.
int reportInterrupted(const finder::SweepResult& result, const Recording& rec) {
  const int sig = InterruptHandler::received();
  if (rec.writer) {
    std::fprintf(stderr, "lrfind_dist: interrupted (%s) after %lld steps; they are in %s (complete=0)\n",
                 sig != 0 ? strsignal(sig) : "a signal on another rank",
                 static_cast<long long>(result.stepsCompleted()), rec.writer->currentPath().c_str());
  }
  return 128 + (sig != 0 ? sig : SIGTERM);
}

// Rank 0: the JSON summary and the plot, then the summary on the console.
void writeOutputs(const RunConfig& c, const finder::SweepResult& result, const RunInfo& info) {
  if (!c.json.empty()) writeTextFile(c.json, renderJson(result, c.sweep, info, c.out), "--json");
  if (!c.plot.empty()) writeTextFile(c.plot, renderSvg(result, c.sweep, info), "--plot");

  const auto& chosen = result.suggestion();
  std::string summary = renderSummary(result, c.sweep) + renderGroupLrs(result, info);
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
}

}  // namespace

void validate(const RunConfig& c) {
  finder::validate(c.sweep, flagName);
  checkOptimizer(c.optimizer);
  checkLoss(c.loss);
  LRFIND_INPUT_CHECK(c.batch_size >= 1, "--batch-size must be >= 1, got ", c.batch_size);
  LRFIND_INPUT_CHECK(c.threads >= 0, "--threads must be >= 0, got ", c.threads);
  LRFIND_INPUT_CHECK(c.bucket_mb > 0, "--bucket-mb must be > 0, got ", c.bucket_mb);
  LRFIND_INPUT_CHECK(c.comm_timeout_s > 0, "--comm-timeout must be > 0 seconds, got ", c.comm_timeout_s);
  LRFIND_INPUT_CHECK(c.stall_warning_s >= 0, "--stall-warning must be >= 0 seconds (0: never), got ",
                     c.stall_warning_s);
  for (const auto& text : c.param_groups) parseParamGroup(text);
  LRFIND_INPUT_CHECK(c.val_fraction >= 0 && c.val_fraction < 1, "--val-fraction must be in [0, 1) (the share of "
                     "--data held out; 0: none), got ", c.val_fraction);
  LRFIND_INPUT_CHECK(c.val_data.empty() || c.val_fraction == 0, "--val-data and --val-fraction both name the "
                     "validation data; give one");
  LRFIND_INPUT_CHECK(c.val_labels.empty() || !c.val_data.empty(), "--val-labels reads the targets of --val-data; "
                     "give --val-data too");
  LRFIND_INPUT_CHECK(c.val_batches >= 0, "--val-batches must be >= 0 (0: the whole validation set), got ",
                     c.val_batches);
  const bool validating = !c.val_data.empty() || c.val_fraction > 0;
  LRFIND_INPUT_CHECK(c.val_batches == 0 || validating, "--val-batches applies to validation data; give --val-data "
                     "or --val-fraction");
  LRFIND_INPUT_CHECK(c.sweep.monitor == finder::Monitor::kTrain || validating,
                     "--monitor val needs validation data: give --val-data FILE or --val-fraction F");
  LRFIND_INPUT_CHECK(c.val_data.empty() || !syntheticSpec(c.val_data), "--val-data takes an HDF5 file, not the "
                     "built-in set '", c.val_data, "'; hold out part of it with --val-fraction");
}

namespace {

// Rank 0's results file once it exists, for the message of a timeout.
std::string g_steps_file;

// The deadline of every wait, from --comm-timeout and --stall-warning. Rank 0 decides
// and names the stalled rank; the others allow it a grace period to do so before they
// give up themselves (they see less: only that rank 0 is silent).
comm::WaitPolicy waitPolicy(const RunConfig& c, int rank) {
  using std::chrono::milliseconds;
  comm::WaitPolicy policy;
  const auto timeout = milliseconds(static_cast<int64_t>(c.comm_timeout_s * 1000));
  const milliseconds grace = rank == 0 ? milliseconds(0) : std::min<milliseconds>(timeout, kRootGrace);
  policy.timeout = timeout + grace;
  policy.stall_warning = milliseconds(static_cast<int64_t>(c.stall_warning_s * 1000));
  policy.timeout_option = grace.count() == 0 ? std::string("--comm-timeout")
                                             : concat("--comm-timeout, plus ", grace.count() / 1000.0,
                                                      " s left to rank 0 to report");
  if (rank == 0) {
    policy.on_stall = [](const std::string& what) { std::fprintf(stderr, "lrfind_dist: warning: %s\n", what.c_str()); };
  }
  return policy;
}

// A collective passed its deadline: a peer stalled, died without the launcher noticing,
// or the network failed. Nothing more can be agreed on, and MPI_Finalize or the
// launcher may never return, so this rank reports and ends its own process. By now the
// results writer (destroyed while the exception unwound) has finalized the partial file.
[[noreturn]] void endAfterTimeout(const comm::CommTimeout& e, int rank, int size) {
  const std::string who = size > 1 && rank != 0 ? concat("rank ", rank, ": ") : std::string();
  const std::string where = g_steps_file.empty() ? "" : concat("; the steps so far are in ", g_steps_file);
  std::fprintf(stderr, "lrfind_dist: error: %s%s%s\n", who.c_str(), e.what(), where.c_str());
  std::fflush(stdout);
  std::fflush(stderr);
  std::_Exit(kExitTimeout);
}

int runInWorld(const RunConfig& c, World& world, const std::optional<Fault>& fault) {
  if (world.rank() == 0) warnIfNoSuggestion(c);
  const int threads = c.threads > 0 ? c.threads : world.defaultThreads();
  setComputeThreads(threads);

  Setup s;
  prepareData(c, world, s);
  prepareModel(c, worldTeam(world), world.rank(), s, fault);
  s.info = describeRun(c, worldTeam(world), s);
  // From here on SIGINT/SIGTERM stop the sweep after the current step, on every rank,
  // and leave the steps done in <out>.partial.
  InterruptHandler interrupts;
  Recording rec = startRecording(c, world, s.info);
  if (rec.writer) g_steps_file = rec.writer->currentPath();
  if (c.verbose) logPlacement(world, s, threads);

  const finder::SweepResult result = sweep(c, worldTeam(world), s, &rec.observers, stepFault(fault, world.rank()),
                                          signalled, rec.writer ? rec.writer->currentPath() : std::string());
  if (result.stop_reason == finder::StopReason::kInterrupted) return reportInterrupted(result, rec);
  if (world.rank() == 0) writeOutputs(c, result, s.info);
  return kExitOk;
}

// The exception being handled, as its message, the kind the message names, the exit code
// it means, and whether every rank agreed on it.
struct FailureText {
  std::string kind;  // "" or " (LibTorch)"
  std::string text;
  int code = kExitFailure;
  bool agreed = false;
};

FailureText describeFailure(const RunConfig& config) {
  try {
    throw;
  } catch (const InputError& e) {
    return {"", e.what(), kExitUsage, comm::isAgreed(e)};
  } catch (const Error& e) {
    return {"", e.what(), kExitFailure, comm::isAgreed(e)};
  } catch (const c10::Error& e) {
    return {" (LibTorch)", config.verbose ? e.what() : oneLine(e.what_without_backtrace()), kExitFailure,
            comm::isAgreed(e)};
  } catch (const std::exception& e) {
    return {"", config.verbose ? e.what() : oneLine(e.what()), kExitFailure, comm::isAgreed(e)};
  }
}

// Prints one line for the exception being handled and returns the exit code. A failure
// all ranks agreed on is reported by rank 0 alone (its text names the failing rank); a
// failure of one rank says which rank it is.
int reportFailure(const RunConfig& config) {
  const FailureText f = describeFailure(config);
  if (f.agreed) {
    if (g_world_rank == 0) std::fprintf(stderr, "lrfind_dist: error%s: %s\n", f.kind.c_str(), f.text.c_str());
  } else if (g_world_size > 1) {
    std::fprintf(stderr, "lrfind_dist: error%s: rank %d: %s\n", f.kind.c_str(), g_world_rank, f.text.c_str());
  } else {
    std::fprintf(stderr, "lrfind_dist: error%s: %s\n", f.kind.c_str(), f.text.c_str());
  }
  std::fflush(stderr);
  return f.code;
}

// Rank 0 of a grid that ran to its end: the JSON and the plot, then the table on the
// console (--print-lr: the table on stderr, each sweep's lr on stdout, "none" where a
// sweep has no suggestion).
void writeGridOutputs(const RunConfig& c, const std::vector<GridSweep>& sweeps, const GridSummary& summary,
                      const std::string& results) {
  if (!c.json.empty()) {
    writeTextFile(c.json, renderGridJson(c.grid, sweeps, summary, results, c.config_text,
                                         finder::StopReason::kCompleted, ""), "--json");
  }
  if (!c.plot.empty()) writeTextFile(c.plot, renderGridSvg(c.grid, sweeps, summary), "--plot");
  const std::string table = renderGridSummary(c.grid, sweeps, summary);
  if (c.print_lr) {
    std::fputs(table.c_str(), stderr);
    for (const auto& sweep : sweeps) {
      const auto& chosen = sweep.result.suggestion();
      if (chosen.found) {
        std::printf("%.6g\n", chosen.lr);
      } else {
        std::printf("none\n");
      }
    }
  } else {
    std::fputs(table.c_str(), stdout);
    std::printf("results: %s", results.c_str());
    if (!c.plot.empty()) std::printf(", plot: %s", c.plot.c_str());
    if (!c.json.empty()) std::printf(", summary: %s", c.json.c_str());
    std::printf("\n");
  }
  std::fflush(stdout);
}

// The grid on every rank: the world splits into rank groups (with more than one), each
// group runs its sweeps one after another on its own communicators, and world rank 0
// collects every sweep into one results file (runtime/grid_run.h has the protocol).
int runGrid(const RunConfig& c, World& world, const std::optional<Fault>& fault, const GridRun& grid) {
  const int threads = c.threads > 0 ? c.threads : world.defaultThreads();
  setComputeThreads(threads);
  const int my_group = world.rank() / grid.ranks_per_sweep;

  Setup s;
  comm::agreeOnSuccess(world.comm(), [&] {
    if (world.rank() == 0) checkOutputs(c);
    s.device = resolveDevice(c.device, world.localRank());
    LRFIND_INPUT_CHECK(c.sweep.precision != finder::Precision::kFp16 || s.device.is_cuda(),
                       "--precision fp16 needs a CUDA device (LibTorch has no float16 autocast on CPU); on ",
                       s.device.str(), " use --precision bf16");
    useDevice(s.device);
  });
  const bool gpu_shared = checkGpuSharing(world.comm(), s.device, c.device, c.allow_gpu_sharing);
  std::unique_ptr<comm::MpiCommunicator> group_comm;
  std::unique_ptr<comm::Mailbox> mailbox;
  if (grid.groups > 1) {
    auto* mpi = dynamic_cast<comm::MpiCommunicator*>(&world.comm());
    LRFIND_CHECK(mpi != nullptr, "rank groups need the MPI backend, not ", world.comm().name());
    group_comm = mpi->split(my_group, world.rank());
    group_comm->setLabel(concat("rank group ", my_group));
    mailbox = mpi->openMailbox();
  }
  const Team team = group_comm ? Team{*group_comm, world.localRank(), group_comm->localSize()} : worldTeam(world);
  // On GPUs: one NCCL communicator per group, from its leader's unique id.
  s.tensor_comm = makeTensorComm(team.comm, s.device, gpu_shared);

  InterruptHandler interrupts;
  std::unique_ptr<GridCollector> collector;
  comm::agreeOnSuccess(world.comm(), [&] {
    if (world.rank() != 0) return;
    GridPlan plan;
    plan.axes = c.grid;
    plan.points = grid.points;
    for (const auto& pc : grid.configs) plan.options.push_back(pc.sweep);
    plan.group_of = grid.group_of;
    plan.groups = grid.groups;
    plan.ranks_per_sweep = grid.ranks_per_sweep;
    plan.world_size = world.size();
    plan.config = c.config_text;
    plan.timeout = world.comm().waitPolicy().timeout;
    plan.peer_names = world.comm().peerNames();
    collector = std::make_unique<GridCollector>(std::move(plan), c.out, mailbox.get());
  });
  if (collector) g_steps_file = collector->currentPath();
  std::unique_ptr<GridReporter> remote;
  GridReporter* reporter = nullptr;
  if (team.rank() == 0) {
    if (collector) {
      reporter = &collector->localReporter();
    } else {
      remote = mailboxReporter(*mailbox);
      reporter = remote.get();
    }
  }
  if (c.verbose) logPlacement(world, s, threads);

  int64_t steps_before = 0;
  const finder::StepHook hook = stepFault(fault, world.rank(), &steps_before);
  auto interrupted = [reporter] { return signalled() || (reporter != nullptr && reporter->aborted(nullptr)); };

  try {
    for (std::size_t i = 0; i < grid.points.size(); ++i) {
      if (grid.group_of[i] != my_group) continue;
      // The leader says whether the group goes on: rank 0 may have asked it to stop.
      at::Tensor go = at::full({1}, interrupted() ? 0 : 1, at::kLong);
      team.comm.setLabel(concat("before ", describeGridPoint(grid.points[i])));
      team.comm.broadcast(go);
      if (go.item<int64_t>() == 0) break;
      const RunConfig& pc = grid.configs[i];
      try {
        comm::agreeOnSuccess(team.comm, [&] { loadSweepData(pc, team, s); });
        agreeOnClasses(team, s);
        prepareModel(pc, team, world.rank(), s, fault);
        s.info = describeRun(pc, team, s);
        s.info.config.clear();  // the grid's, at the file's root
        GridSweep header;
        header.index = i;
        header.group = my_group;
        header.started_at = wallClockNow();
        header.info = s.info;
        if (reporter != nullptr) reporter->start(header);
        const auto observer = reporter != nullptr ? sweepReporter(*reporter, i) : nullptr;
        const finder::SweepResult result = sweep(pc, team, s, observer.get(), hook, interrupted, g_steps_file);
        steps_before += result.stepsCompleted();
        if (result.stop_reason == finder::StopReason::kInterrupted) break;
      } catch (const comm::CommTimeout&) {
        throw;
      } catch (const std::exception&) {
        if (grid.groups == 1) throw;  // the whole world agreed: reported as for one sweep
        // The group agreed; rank 0 stops the others and reports it.
        const FailureText f = describeFailure(c);
        if (reporter != nullptr) reporter->failed(i, f.kind.empty() ? f.text : concat(f.text, f.kind), f.code);
        break;
      }
    }
    if (reporter != nullptr) reporter->done();
  } catch (const comm::CommTimeout&) {
    throw;
  } catch (const std::exception& e) {
    // One group: every rank agreed; rank 0 marks the file before the error is reported.
    if (collector) {
      GridSummary summary;
      try {
        collector->finish(finder::StopReason::kError, e.what(), &summary);
      } catch (const std::exception&) {
        // The error being reported says more than a second one from the file.
      }
    }
    throw;
  }

  if (!collector) {
    return grid.groups > 1 ? waitForRelease(*mailbox, world.comm().waitPolicy(), world.comm().peerNames()) : kExitOk;
  }
  collector->waitForGroups();
  int code = kExitOk;
  auto stop = finder::StopReason::kCompleted;
  if (!collector->failure().empty()) {
    code = collector->failureExitCode();
    stop = finder::StopReason::kError;
  } else if (collector->interrupted() || signalled()) {
    const int sig = InterruptHandler::received();
    code = 128 + (sig != 0 ? sig : SIGTERM);
    stop = finder::StopReason::kInterrupted;
  }
  GridSummary summary;
  const std::vector<GridSweep> sweeps = collector->finish(stop, collector->failure(), &summary);
  collector->releaseRanks(code);
  if (code == kExitOk) {
    writeGridOutputs(c, sweeps, summary, collector->currentPath());
  } else if (stop == finder::StopReason::kError) {
    std::fprintf(stderr, "lrfind_dist: error: %s (the sweeps so far are in %s)\n", collector->failure().c_str(),
                 collector->currentPath().c_str());
  } else {
    std::fprintf(stderr, "lrfind_dist: interrupted; the sweeps so far are in %s (complete=0)\n",
                 collector->currentPath().c_str());
  }
  return code;
}

int runChecked(const RunConfig& c) {
  World world(c.backend);
  g_world_rank = world.rank();
  g_world_size = world.size();
  world.comm().setWaitPolicy(waitPolicy(c, world.rank()));
  world.comm().setLabel("start-up");
  try {
    GridRun grid;
    validateAgreed(c, world.size(), &grid);
    const std::optional<Fault> fault = faultToInject();
    exchangePeerNames(world.comm());
    return c.grid.empty() ? runInWorld(c, world, fault) : runGrid(c, world, fault, grid);
  } catch (const comm::CommTimeout& e) {
    endAfterTimeout(e, world.rank(), world.size());
  } catch (const std::exception&) {
    // Reported while the world still exists: its teardown (MPI_Finalize) waits for every
    // rank, so no rank exits, and no launcher ends the job, before rank 0 has printed.
    return reportFailure(c);
  }
}

}  // namespace

int run(const RunConfig& config) {
  const LauncherInfo launcher = detectLauncher();
  g_world_rank = std::max(0, launcher.rank);  // the launcher's word until MPI's
  g_world_size = std::max(1, launcher.size);
  try {
    return runChecked(config);
  } catch (const std::exception&) {
    return reportFailure(config);  // the world could not be made
  }
}

std::string versionText() {
  return concat("lrfind ", LRFIND_VERSION, " (", LRFIND_BUILD_TYPE, ")\n",
                "  LibTorch ", TORCH_VERSION, " (", LRFIND_TORCH_HAS_CUDA ? "with" : "without",
                " CUDA; a GPU is ", torch::cuda::is_available() ? "" : "not ", "usable now)\n",
                "  CUDA toolkit ", LRFIND_HAVE_CUDA_TOOLKIT ? LRFIND_CUDA_TOOLKIT_VERSION : "not found", ", NCCL ",
                LRFIND_HAVE_NCCL ? LRFIND_NCCL_VERSION : "not found", " at build time", ncclLibraryText(),
                "\n  GPUs LibTorch sees now: ", libtorchGpus(), "\n",
                "  MPI: ", comm::MpiEnvironment::libraryVersion(), " (MPI ", LRFIND_MPI_VERSION, ")\n",
                "  HDF5 ", LRFIND_HDF5_VERSION, ", compiler ", LRFIND_CXX_COMPILER, "\n",
                "  communication backends: self, mpi", LRFIND_HAVE_NCCL ? ", nccl" : "", " (and MPI with host staging "
                "for shared GPUs)\n");
}

}  // namespace lrfind::runtime
