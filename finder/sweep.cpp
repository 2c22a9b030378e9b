#include "finder/sweep.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>
#include <sstream>

#include <ATen/ATen.h>
#include <torch/optim/optimizer.h>

#include "comm/agreement.h"
#include "common/error.h"
#include "comm/grad_sync.h"
#include "comm/self_communicator.h"
#include "finder/precision.h"
#include "finder/schedule.h"
#include "finder/smoothing.h"
#include "finder/state_guard.h"

namespace lrfind::finder {
namespace {

// What each rank sends rank 0 after its forward/backward (and, in validation mode,
// after its evaluation: the held-out loss sum and samples, and the evaluation's time);
// kFailure holds a comm::FailureKind (the step's share of the agreement protocol,
// comm/agreement.h).
// kNonFinite: with loss scaling, this rank's averaged gradients are not all finite.
enum LocalSlot { kLossSum = 0, kSamples, kFailure, kInterrupted, kSeconds, kNonFinite, kLocalSlots };
// What rank 0 broadcasts back; kSkip: with loss scaling, skip this step's update.
enum DecisionSlot { kStop = 0, kNextLr, kReason, kFailingRank, kFailingKind, kSkip, kDecisionSlots };

using Clock = std::chrono::steady_clock;

double secondsSince(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// The model's mean loss on `batch` (forward and loss under `precision`'s autocast);
// `source` names where the batch came from when it is empty.
at::Tensor batchLoss(Model& model, const Batch& batch, const LossFn& loss_fn, Precision precision,
                     const char* source) {
  LRFIND_CHECK(batch.input.defined() && batch.input.dim() >= 1 && batch.input.size(0) > 0, source,
               " returned an empty batch");
  at::Tensor loss;
  {
    AutocastGuard autocast(precision, batch.input.device().type());
    loss = loss_fn(model.forward(batch.input), batch.target);
  }
  LRFIND_CHECK(loss.numel() == 1, "the loss must be a scalar, got shape ", loss.sizes());
  return loss;
}

// Runs forward/backward for one optimizer step; returns the summed loss and samples.
// The loss is divided by accumulate·world before backward: the summed gradients over
// micro-batches and ranks are then the gradient of the global mean (powers of two
// divide exactly), and averaging needs no extra pass.
std::pair<double, double> forwardBackward(Model& model, BatchSource& data, const LossFn& loss_fn,
                                          int64_t accumulate, int world, comm::GradientAverager& averager,
                                          Precision precision, double loss_scale) {
  const double scale = loss_scale / static_cast<double>(accumulate * world);
  double loss_sum = 0;
  double samples = 0;
  for (int64_t m = 0; m < accumulate; ++m) {
    const Batch batch = data.next();
    const at::Tensor loss = batchLoss(model, batch, loss_fn, precision, "the data source");
    averager.beginBackward(/*last=*/m + 1 == accumulate);  // only the last micro-batch communicates
    (scale != 1.0 ? loss * scale : loss).backward();
    const auto n = static_cast<double>(batch.input.size(0));
    loss_sum += loss.item<double>() * n;
    samples += n;
  }
  return {loss_sum, samples};
}

// The loss summed over this rank's held-out samples, and their number: every batch of
// `data` in eval mode without gradients; the model is back in train mode afterwards,
// also when a batch throws. The sum stays on the device until the end.
std::pair<double, double> evaluate(Model& model, EvalSource& data, const LossFn& loss_fn, Precision precision) {
  struct TrainAgain {
    Model& model;
    ~TrainAgain() { model.setTraining(true); }
  } train_again{model};
  at::NoGradGuard no_grad;
  model.setTraining(false);
  at::Tensor loss_sum;
  double samples = 0;
  for (int64_t i = 0; i < data.numBatches(); ++i) {
    const Batch batch = data.batch(i);
    const at::Tensor loss = batchLoss(model, batch, loss_fn, precision, "the validation data");
    const auto n = static_cast<double>(batch.input.size(0));
    at::Tensor weighted = loss.detach().to(at::kDouble).reshape({}) * n;
    loss_sum = loss_sum.defined() ? loss_sum + weighted : weighted;
    samples += n;
  }
  return {loss_sum.defined() ? loss_sum.item<double>() : 0.0, samples};
}

// Whether every gradient of `params` is finite (one device sync).
bool gradientsFinite(const std::vector<at::Tensor>& params) {
  at::Tensor bad;
  for (const auto& p : params) {
    if (!p.grad().defined()) continue;
    at::Tensor b = at::isfinite(p.grad()).logical_not().any();
    bad = bad.defined() ? bad.logical_or(b) : b;
  }
  return !bad.defined() || !bad.item<bool>();
}

// Rank 0's reading of one gather: the global mean, each rank's mean, the first failing
// rank (-1: none) and its kind, whether any rank was interrupted, the slowest time.
struct Gathered {
  double mean = 0;
  std::vector<double> per_rank;
  int failing = -1;
  double failing_kind = 0;
  bool interrupted = false;
  bool non_finite = false;  // some rank's gradients (loss scaling)
  double max_seconds = 0;
};

Gathered readGathered(const at::Tensor& gathered, int world) {
  Gathered out;
  const auto* g = gathered.data_ptr<double>();
  double total = 0.0, total_samples = 0.0;
  for (int r = 0; r < world; ++r) {
    const double* slot = g + static_cast<std::ptrdiff_t>(r) * kLocalSlots;
    if (slot[kFailure] != static_cast<double>(comm::FailureKind::kNone) && out.failing < 0) {
      out.failing = r;
      out.failing_kind = slot[kFailure];
    }
    out.interrupted = out.interrupted || slot[kInterrupted] != 0.0;
    out.non_finite = out.non_finite || slot[kNonFinite] != 0.0;
    out.max_seconds = std::max(out.max_seconds, slot[kSeconds]);
    total += slot[kLossSum];
    total_samples += slot[kSamples];
    out.per_rank.push_back(slot[kSamples] > 0 ? slot[kLossSum] / slot[kSamples] : std::nan(""));
  }
  out.mean = total / total_samples;
  return out;
}

// Each param group's lr as a multiple of the scheduled lr: `given`, or the groups'
// initial ratios to the first.
std::vector<double> groupMultipliers(torch::optim::Optimizer& optimizer, const std::vector<double>& given) {
  auto& groups = optimizer.param_groups();
  LRFIND_CHECK(!groups.empty(), "the optimizer has no param groups");
  if (!given.empty()) {
    LRFIND_CHECK(given.size() == groups.size(), given.size(), " lr multipliers for ", groups.size(),
                 " param groups");
    return given;
  }
  const double first = groups[0].options().get_lr();
  std::vector<double> out{1.0};
  if (groups.size() == 1) return out;
  LRFIND_INPUT_CHECK(std::isfinite(first) && first > 0, "the optimizer's first param group has lr ", first,
                     "; with several groups the sweep keeps each at its initial lr ratio to the first, which "
                     "needs a positive first lr");
  for (std::size_t g = 1; g < groups.size(); ++g) out.push_back(groups[g].options().get_lr() / first);
  return out;
}

std::string mib(std::size_t bytes) {
  std::ostringstream out;
  out << static_cast<double>(bytes) / (1 << 20) << " MiB";
  return out.str();
}

std::string describe(const comm::GradientAverager& averager, const comm::AveragingOptions& options) {
  std::string text = concat(averager.transport(), averager.overlapping() ? ", overlapped with backward" : ", after backward",
                            ", ", averager.numBuckets(), " bucket(s) of at most ");
  text += options.first_bucket_bytes >= options.bucket_bytes
              ? mib(options.bucket_bytes)
              : concat(mib(options.first_bucket_bytes), " (the first) and ", mib(options.bucket_bytes));
  if (!averager.sharedMemoryUnavailable().empty()) {
    text += concat(" (not through shared memory: ", averager.sharedMemoryUnavailable(), ")");
  }
  return text;
}

// FNV-1a over the parameters' bytes; ranks compare min and max of it.
void checkParametersAgree(comm::Communicator& comm, const std::vector<at::Tensor>& params, int64_t steps,
                          const std::string& option) {
  uint64_t hash = 1469598103934665603ULL;
  for (const auto& p : params) {
    const at::Tensor host = p.detach().to(at::kCPU).contiguous();
    const auto* bytes = static_cast<const unsigned char*>(host.data_ptr());
    for (std::size_t i = 0; i < host.nbytes(); ++i) hash = (hash ^ bytes[i]) * 1099511628211ULL;
  }
  const auto value = static_cast<int64_t>(hash >> 1);  // fits int64 for MPI's MIN/MAX
  at::Tensor lo = at::full({1}, value, at::kLong), hi = lo.clone();
  comm.allreduce(lo, comm::AllreduceOptions{comm::ReduceOp::kMin});
  comm.allreduce(hi, comm::AllreduceOptions{comm::ReduceOp::kMax});
  if (lo.item<int64_t>() != hi.item<int64_t>()) {
    throw CommError(concat(option, ": parameters differ across ranks after ", steps,
                           " steps (this rank's checksum ", value, ")"));
  }
}

}  // namespace

SweepResult runSweep(Model& model, torch::optim::Optimizer& optimizer, BatchSource& data,
                     const LossFn& loss_fn, const SweepOptions& options,
                     const SweepContext& context) {
  LRFIND_CHECK(context.option_name != nullptr, "SweepContext::option_name must be set (fieldName by default)");
  validate(options, context.option_name);
  comm::SelfCommunicator self;
  comm::Communicator& comm = context.comm != nullptr ? *context.comm : self;
  comm::Communicator& tensor_comm = context.tensor_comm != nullptr ? *context.tensor_comm : comm;
  LRFIND_CHECK(tensor_comm.size() == comm.size() && tensor_comm.rank() == comm.rank(),
               "the tensor communicator must span the same ranks as the control communicator");
  const int rank = comm.rank();
  const int world = comm.size();
  const bool is_root = rank == 0;
  SweepObserver* observer = is_root ? context.observer : nullptr;

  const std::vector<double> multipliers = groupMultipliers(optimizer, context.lr_multipliers);
  std::optional<StateGuard> guard;
  if (options.restore_state) guard.emplace(model, optimizer);
  model.setTraining(true);

  std::vector<at::Tensor> params = model.parameters();
  comm::AveragingOptions averaging = context.averaging;
  averaging.loss_prescaled = true;
  comm::GradientAverager averager(tensor_comm, params, averaging);
  if (is_root && world > 1 && context.on_averaging) {
    context.on_averaging(describe(averager, averaging), averager.sharedMemoryUnavailable());
  }

  SweepResult result;
  result.method = options.suggest;
  result.world_size = world;
  EmaSmoother smoother(options.beta);
  StopRule stop_rule(options.early_stop_threshold, options.num_training);

  at::Tensor local = at::zeros({kLocalSlots}, at::kDouble);
  at::Tensor gathered = is_root ? at::zeros({world * kLocalSlots}, at::kDouble) : at::Tensor();
  at::Tensor decision = at::zeros({kDecisionSlots}, at::kDouble);
  // An observer failure on rank 0 is reported as rank 0's failure at the next step.
  std::string observer_error;
  auto notify = [&](auto&& call) {
    if (observer == nullptr || !observer_error.empty()) return;
    try {
      call();
    } catch (const std::exception& e) {
      observer_error = e.what();
    }
  };
  notify([&] { observer->onStart(options, world); });
  // Every collective's messages (stall warnings, timeouts) say where the sweep was.
  auto label = [&](const std::string& text) {
    comm.setLabel(text);
    tensor_comm.setLabel(text);
  };

  EvalSource* validation = context.validation;
  LRFIND_INPUT_CHECK(options.monitor == Monitor::kTrain || validation != nullptr, context.option_name("monitor"),
                     " val needs validation data");
  const bool monitor_val = options.monitor == Monitor::kVal;
  const bool scaling = options.lossScaling();
  LossScaler scaler;

  auto failure = comm::FailureKind::kNone;  // the failing rank's, when a step failed
  try {
    label("before step 0");
    if (world > 1) {
      at::NoGradGuard no_grad;
      for (auto& p : params) tensor_comm.broadcast(p);
      tensor_comm.synchronize();
    }
    double lr = options.min_lr;
    std::string local_error;
    // This rank's part of a decision: `run` is its local work, returning {loss sum,
    // samples}; what it throws becomes this rank's failure.
    auto measure = [&](const auto& run) {
      const auto t0 = Clock::now();
      auto local_kind = local_error.empty() ? comm::FailureKind::kNone : comm::FailureKind::kError;
      double loss_sum = 0.0, samples = 0.0;
      if (local_error.empty()) {
        try {
          std::tie(loss_sum, samples) = run();
        } catch (const std::exception& e) {
          local_error = e.what();
          local_kind = comm::failureKind(e);
        }
      }
      auto* lp = local.data_ptr<double>();
      lp[kLossSum] = loss_sum;
      lp[kSamples] = samples;
      lp[kFailure] = static_cast<double>(local_kind);
      lp[kInterrupted] = context.interrupted && context.interrupted() ? 1.0 : 0.0;
      lp[kSeconds] = secondsSince(t0);
      lp[kNonFinite] = 0.0;
    };
    // Every rank's part to rank 0, and rank 0's reading of them (empty elsewhere).
    auto collect = [&] {
      comm.gather(local, gathered);
      return is_root ? readGathered(gathered, world) : Gathered{};
    };
    // Rank 0's decision for step k, broadcast; true when the sweep ends with an error
    // (result and `failure` set).
    auto decide = [&](int64_t k, double step_lr, StopReason reason, const Gathered& g) {
      if (is_root) {
        auto* d = decision.data_ptr<double>();
        d[kStop] = reason == StopReason::kRunning ? 0.0 : 1.0;
        d[kNextLr] = k + 1 < options.num_training ? scheduledLr(k + 1, options) : step_lr;
        d[kReason] = static_cast<double>(reason);
        d[kFailingRank] = g.failing;
        d[kFailingKind] = g.failing_kind;
        d[kSkip] = g.non_finite ? 1.0 : 0.0;
      }
      comm.broadcast(decision);
      const auto* d = decision.data_ptr<double>();
      if (static_cast<StopReason>(static_cast<int>(d[kReason])) != StopReason::kError) return false;
      const int failing = static_cast<int>(d[kFailingRank]);
      result.stop_reason = StopReason::kError;
      failure = static_cast<comm::FailureKind>(static_cast<int64_t>(d[kFailingKind]));
      result.error = concat("rank ", failing, ", step ", k, ": ", comm::broadcastText(comm, failing, local_error));
      return true;
    };
    // Rank 0: smooths the monitored loss and applies the stop rule.
    auto observe = [&](int64_t k, double monitored, bool interrupted, StepRecord& record) {
      record.loss = smoother.update(monitored);
      StopReason reason = stop_rule.observe(k, monitored, record.loss);
      if (reason == StopReason::kRunning && interrupted) reason = StopReason::kInterrupted;
      return reason;
    };

    for (int64_t k = 0; k < options.num_training; ++k) {
      label("step " + std::to_string(k));
      const auto t0 = Clock::now();
      const double step_lr = lr;
      std::vector<double> group_lr;
      for (std::size_t g = 0; g < multipliers.size(); ++g) {
        group_lr.push_back(step_lr * multipliers[g]);
        optimizer.param_groups()[g].options().set_lr(group_lr.back());
      }
      averager.zeroGradients();
      if (is_root && local_error.empty()) local_error = observer_error;

      const double loss_scale = scaling ? scaler.scale() : 1.0;
      measure([&] {
        if (context.before_step) context.before_step(k);
        return forwardBackward(model, data, loss_fn, options.accumulate, world, averager, options.precision,
                               loss_scale);
      });
      // Overlapped: every bucket not started by the hooks starts now, also after a
      // failure here, so that every rank has started the same allreduces.
      averager.launchRemaining();
      if (scaling) {
        // The averaged gradients first: whether they are finite travels with this
        // step's gather, and rank 0's decision says skip for every rank.
        averager.finish();
        if (!averager.overlapping()) averager.average();
        local.data_ptr<double>()[kNonFinite] = gradientsFinite(params) ? 0.0 : 1.0;
      }
      const Gathered train = collect();

      StepRecord record;
      StopReason reason = StopReason::kError;
      if (is_root && train.failing < 0) {
        record.loss_raw = train.mean;
        record.loss_per_rank = train.per_rank;
        // Validation mode decides after the evaluation.
        reason = validation != nullptr ? StopReason::kRunning : observe(k, train.mean, train.interrupted, record);
      }
      const bool failed = decide(k, step_lr, reason, train);
      // Overlapped: the allreduces complete whatever was decided (every rank started
      // them); blocking: average() below, only for a step that is applied. (With loss
      // scaling both happened before the gather.)
      if (!scaling) averager.finish();
      if (failed) break;
      const bool skip = decision.data_ptr<double>()[kSkip] != 0.0;
      if (decision.data_ptr<double>()[kStop] == 0.0) {
        if (!scaling && !averager.overlapping()) averager.average();
        if (scaling && !skip) {
          at::NoGradGuard no_grad;
          for (auto& p : params) {
            if (p.grad().defined()) p.grad().mul_(1.0 / loss_scale);
          }
        }
        if (!skip) optimizer.step();
      }
      if (scaling) scaler.update(!skip);
      if (validation != nullptr) {
        measure([&] { return evaluate(model, *validation, loss_fn, options.precision); });
        const Gathered val = collect();
        if (is_root) {
          reason = StopReason::kError;
          if (val.failing < 0) {
            record.val_loss = val.mean;
            record.eval_seconds = val.max_seconds;
            reason = observe(k, monitor_val ? val.mean : train.mean, train.interrupted || val.interrupted, record);
          }
        }
        if (decide(k, step_lr, reason, val)) break;
      }
      const auto* d = decision.data_ptr<double>();
      if (d[kStop] == 0.0) lr = d[kNextLr];
      result.lr.push_back(step_lr);
      if (is_root) {
        record.step = k;
        record.lr = step_lr;
        record.group_lr = std::move(group_lr);
        record.loss_scale = loss_scale;
        record.skipped = skip;
        record.seconds = secondsSince(t0);
        result.loss_raw.push_back(record.loss_raw);
        result.loss.push_back(record.loss);
        result.loss_per_rank.push_back(record.loss_per_rank);
        result.group_lr.push_back(record.group_lr);
        result.step_seconds.push_back(record.seconds);
        if (validation != nullptr) {
          result.val_loss.push_back(record.val_loss);
          result.eval_seconds.push_back(record.eval_seconds);
        }
        if (scaling) {
          result.loss_scale.push_back(record.loss_scale);
          result.skipped.push_back(record.skipped ? 1 : 0);
        }
        notify([&] { observer->onStep(record); });
      }
      if (d[kStop] != 0.0) {
        result.stop_reason = static_cast<StopReason>(static_cast<int>(d[kReason]));
        break;
      }
    }
  } catch (const comm::CommTimeout& e) {
    // A rank stalled or the network failed: the steps so far are all there will be.
    // Rank 0 still records them below; the caller ends the process (the communicators
    // are unusable now).
    result.stop_reason = StopReason::kTimeout;
    result.error = e.what();
  }
  label("after the sweep");
  if (is_root) {
    result.stop_test = toString(stop_rule.decidedBy());
    result.stop_scale = stop_rule.scale();
    const SuggestInput input{result.lr, result.loss, options.mode, options.skip_begin, options.skip_end,
                             context.option_name};
    result.suggestions = suggestAll(input);
    result.suggestion_warning = edgeWarning(result.suggestions, options.suggest, input);
    notify([&] { observer->onEnd(result); });
  }
  if (context.check_consistency && result.stop_reason != StopReason::kError &&
      result.stop_reason != StopReason::kTimeout) {
    checkParametersAgree(comm, params, result.stepsCompleted(), context.option_name("check_consistency"));
  }
  if (guard) guard->restore();
  if (result.stop_reason == StopReason::kError) {
    // Bad input found mid-sweep stays bad input (exit 2); anything else failed the sweep.
    if (failure == comm::FailureKind::kInput) throw comm::Agreed<InputError>(result.error);
    throw comm::Agreed<CommError>(result.error);
  }
  if (result.stop_reason == StopReason::kTimeout) throw comm::CommTimeout(result.error);
  if (!observer_error.empty()) throw Error(observer_error);
  return result;
}

}  // namespace lrfind::finder
