#include "lrfind/lrfind.h"

#include <cmath>
#include <stdexcept>

#include <ATen/ATen.h>

#include "common/error.h"
#include "comm/mpi_communicator.h"
#include "finder/model.h"
#include "finder/sweep.h"
#include "lrfind/config.h"

namespace lrfind {
namespace {

class FunctionBatches final : public finder::BatchSource {
 public:
  explicit FunctionBatches(const BatchFn& next) : next_(next) {}
  finder::Batch next() override {
    auto [input, target] = next_();
    return {std::move(input), std::move(target)};
  }

 private:
  const BatchFn& next_;
};

class VectorEval final : public finder::EvalSource {
 public:
  explicit VectorEval(const std::vector<std::pair<torch::Tensor, torch::Tensor>>& batches) : batches_(batches) {}
  int64_t numBatches() const override { return static_cast<int64_t>(batches_.size()); }
  finder::Batch batch(int64_t index) override {
    const auto& [input, target] = batches_[static_cast<std::size_t>(index)];
    return {input, target};
  }

 private:
  const std::vector<std::pair<torch::Tensor, torch::Tensor>>& batches_;
};

finder::SweepOptions toSweepOptions(const Options& o) {
  finder::SweepOptions s;
  s.min_lr = o.min_lr;
  s.max_lr = o.max_lr;
  s.num_training = o.num_training;
  s.mode = finder::parseMode(o.mode);
  s.early_stop_threshold = o.early_stop_threshold;
  s.beta = o.beta;
  s.suggest = finder::parseSuggestMethod(o.suggest);
  s.skip_begin = o.skip_begin;
  s.skip_end = o.skip_end;
  s.accumulate = o.accumulate;
  if (!o.monitor.empty()) s.monitor = finder::parseMonitor(o.monitor);
  s.precision = finder::parsePrecision(o.precision);
  finder::validate(s);
  return s;
}

}  // namespace

Result findLr(const std::shared_ptr<torch::nn::Module>& module, const ForwardFn& forward,
              torch::optim::Optimizer& optimizer, const BatchFn& next_batch, const LossFn& loss,
              const Options& options) {
  if (!module || !forward || !next_batch || !loss) {
    throw std::invalid_argument("lrfind::findLr: module, forward, next_batch and loss must all be given");
  }
  finder::SweepOptions sweep_options;
  try {
    sweep_options = toSweepOptions(options);
  } catch (const InputError& e) {
    throw std::invalid_argument(concat("lrfind::findLr: ", e.what()));
  }
  finder::NnModel model(module, forward);
  FunctionBatches data(next_batch);
  VectorEval validation(options.val_data);
  std::unique_ptr<comm::MpiCommunicator> mpi;
  finder::SweepContext context;
  if (options.mpi_comm != nullptr) {
    mpi = std::make_unique<comm::MpiCommunicator>(options.mpi_comm);
    context.comm = mpi.get();
  }
  // Validation mode when any rank has held-out data (a rank may have no share of it).
  bool validating = !options.val_data.empty();
  if (mpi) {
    at::Tensor any = at::full({1}, validating ? 1 : 0, at::kLong);
    mpi->allreduce(any, comm::AllreduceOptions{comm::ReduceOp::kMax});
    validating = any.item<int64_t>() != 0;
  }
  if (validating) {
    context.validation = &validation;
    if (options.monitor.empty()) sweep_options.monitor = finder::Monitor::kVal;
  } else if (sweep_options.monitor == finder::Monitor::kVal) {
    throw std::invalid_argument("lrfind::findLr: monitor \"val\" needs val_data");
  }
  const finder::SweepResult r = finder::runSweep(model, optimizer, data, loss, sweep_options, context);

  Result out;
  out.lr = r.lr;
  out.loss = r.loss;
  out.loss_raw = r.loss_raw;
  out.val_loss = r.val_loss;
  out.group_lr = r.group_lr;
  out.stop_reason = finder::toString(r.stop_reason);
  for (const auto& s : r.suggestions) {
    out.suggestions[finder::toString(s.method)] = s.found ? std::optional<double>(s.lr) : std::nullopt;
  }
  if (!r.suggestions.empty() && r.suggestion().found) out.suggested_lr = r.suggestion().lr;
  if (mpi) {
    // Rank 0 holds the suggestions; every rank gets them (NaN: none).
    const auto& methods = finder::allSuggestMethods();
    at::Tensor picks = at::full({static_cast<int64_t>(methods.size()) + 1}, std::nan(""), at::kDouble);
    auto* p = picks.data_ptr<double>();
    if (mpi->rank() == 0) {
      for (std::size_t i = 0; i < methods.size(); ++i) p[i] = out.suggestions[finder::toString(methods[i])].value_or(NAN);
      p[methods.size()] = out.suggested_lr.value_or(NAN);
    }
    mpi->broadcast(picks);
    auto pick = [](double v) { return std::isnan(v) ? std::nullopt : std::optional<double>(v); };
    for (std::size_t i = 0; i < methods.size(); ++i) out.suggestions[finder::toString(methods[i])] = pick(p[i]);
    out.suggested_lr = pick(p[methods.size()]);
  }
  return out;
}

const char* version() { return LRFIND_VERSION; }

}  // namespace lrfind
