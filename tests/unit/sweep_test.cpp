// The sweep loop of finder/, on test-local data, loss and optimizers (sweep_fixture.h):
// this binary links lrfind_finder alone. Tests of runtime's pieces in a sweep (its
// optimizer factory, TorchScript models) and tests whose numbers hold for runtime's
// synthetic set are in runtime_sweep_test.cpp.
#include "finder/sweep.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/nn.h>
#include <torch/optim.h>

#include "common/error.h"
#include "finder/precision.h"
#include "finder/schedule.h"
#include "finder/smoothing.h"
#include "finder/suggest.h"
#include "finder/state_guard.h"
#include "unit/sweep_fixture.h"

namespace lrfind {
namespace {

using finder::StopReason;
using testing::Snapshot;
using testing::SweepTask;
using testing::warmUp;

TEST(Sweep, StopsAtTheFirstStepWhoseLossDiverges) {
  // The stop rule checked step by step against the recorded losses: no step before the
  // last exceeds threshold x the best loss before it, the last does. (LossFallsThenDiverges,
  // in runtime_sweep_test.cpp, asks how far the loss falls on runtime's synthetic set.)
  SweepTask t;
  torch::optim::SGD opt(t.model->parameters(), torch::optim::SGDOptions(1e-4));
  auto batches = t.batches();
  finder::SweepOptions o;
  o.min_lr = 1e-4;
  o.max_lr = 1e3;
  const auto r = finder::runSweep(*t.model, opt, batches, t.loss, o);
  ASSERT_EQ(r.stop_reason, StopReason::kDiverged);
  ASSERT_LT(r.stepsCompleted(), o.num_training);
  ASSERT_GE(r.stepsCompleted(), 2);
  ASSERT_EQ(r.loss.size(), static_cast<std::size_t>(r.stepsCompleted()));
  const double threshold = *o.early_stop_threshold;
  double best = r.loss.front();
  for (std::size_t k = 1; k + 1 < r.loss.size(); ++k) {
    EXPECT_LE(r.loss[k], threshold * best) << "step " << k << " diverged but the sweep went on";
    best = std::min(best, r.loss[k]);
  }
  EXPECT_LT(best, r.loss.front()) << "the loss should fall first";
  EXPECT_GT(r.loss.back(), threshold * best) << "the last step should be the one that diverged";
  ASSERT_TRUE(r.suggestion().found);
  EXPECT_GT(r.suggestion().lr, o.min_lr);
  EXPECT_LT(r.suggestion().lr, r.lr.back());
}

// The same sweep with the loss shifted by -10 (a loss below zero everywhere): the
// ratio rule would stop it at step 1; the shift test stops it where the unshifted sweep
// stops, give or take a few steps, after the minimum, and the result says which test.
TEST(Sweep, LossShiftedBelowZeroStopsAfterItsMinimumByTheShiftTest) {
  finder::SweepOptions o;
  o.min_lr = 1e-4;
  o.max_lr = 1e3;
  auto sweep = [&](double shift) {
    SweepTask t;
    torch::optim::SGD opt(t.model->parameters(), torch::optim::SGDOptions(1e-4));
    auto batches = t.batches();
    const finder::LossFn ce = t.loss;
    const finder::LossFn shifted = [ce, shift](const at::Tensor& out, const at::Tensor& y) { return ce(out, y) + shift; };
    return finder::runSweep(*t.model, opt, batches, shifted, o);
  };
  const auto plain = sweep(0), below = sweep(-10);
  ASSERT_EQ(plain.stop_reason, StopReason::kDiverged);
  EXPECT_EQ(plain.stop_test, "ratio");
  ASSERT_EQ(below.stop_reason, StopReason::kDiverged);
  EXPECT_EQ(below.stop_test, "shift");
  EXPECT_GT(below.stop_scale, 0);
  const auto minimum = std::min_element(below.loss.begin(), below.loss.end()) - below.loss.begin();
  EXPECT_GT(below.stepsCompleted(), minimum + 1) << "not while the loss still falls";
  EXPECT_NEAR(static_cast<double>(below.stepsCompleted()), static_cast<double>(plain.stepsCompleted()), 5);
  ASSERT_TRUE(below.suggestion().found);
  EXPECT_NEAR(std::log10(below.suggestion().lr), std::log10(plain.suggestion().lr), 0.3);
}

TEST(Sweep, RestoresSgdMomentumStateBitForBit) {
  SweepTask t;
  torch::optim::SGD opt(t.model->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
  warmUp(t, opt, 3);
  t.model->setTraining(false);
  const Snapshot before(*t.model, opt);
  ASSERT_FALSE(before.opt_state.empty());
  auto batches = t.batches();
  finder::SweepOptions o;
  o.max_lr = 10;
  finder::runSweep(*t.model, opt, batches, t.loss, o);
  before.expectEqual(*t.model, opt);
}

TEST(Sweep, RestoresAdamStateBitForBit) {
  SweepTask t;
  torch::optim::Adam opt(t.model->parameters(), torch::optim::AdamOptions(1e-3));
  warmUp(t, opt, 2);
  const Snapshot before(*t.model, opt);
  auto batches = t.batches();
  finder::runSweep(*t.model, opt, batches, t.loss, finder::SweepOptions{});
  before.expectEqual(*t.model, opt);
}

TEST(Sweep, RestoresEveryLibTorchOptimizer) {
  // The guard's by-type deep copy, for each LibTorch optimizer it knows, built directly.
  for (const auto& name : testing::libTorchOptimizerNames()) {
    SweepTask t;
    auto opt = testing::makeLibTorchOptimizer(name, t.model->parameters(), 1e-3);
    ASSERT_NE(opt, nullptr) << name;
    testing::expectSweepRestores(t, *opt, name);
  }
}

// A user-defined optimizer: plain SGD that also counts its steps per parameter, with a
// state type the guard does not know, so the guard must use its save()/load().
struct CountState : torch::optim::OptimizerCloneableParamState<CountState> {
  TORCH_ARG(at::Tensor, count);

 public:  // TORCH_ARG leaves the section private
  void serialize(torch::serialize::OutputArchive& archive) const override { archive.write("count", count()); }
  void serialize(torch::serialize::InputArchive& archive) override {
    at::Tensor t;
    archive.read("count", t);
    count(t);
  }
};

class CountingSgd : public torch::optim::Optimizer {
 public:
  CountingSgd(std::vector<at::Tensor> params, double lr)
      : Optimizer({torch::optim::OptimizerParamGroup(std::move(params))},
                  std::make_unique<torch::optim::SGDOptions>(lr)) {}
  at::Tensor step(LossClosure = nullptr) override {
    at::NoGradGuard no_grad;
    for (auto& group : param_groups()) {
      for (auto& p : group.params()) {
        if (!p.grad().defined()) continue;
        auto& slot = state()[lrfind::finder::optimizerStateKey(state(), p)];
        if (!slot) {
          auto fresh = std::make_unique<CountState>();
          fresh->count(at::zeros({1}));
          slot = std::move(fresh);
        }
        static_cast<CountState&>(*slot).count().add_(1);
        p.add_(p.grad(), -group.options().get_lr());
      }
    }
    return {};
  }
  void save(torch::serialize::OutputArchive& archive) const override {
    torch::optim::serialize<CountState, torch::optim::SGDOptions>(archive, *this);
  }
  void load(torch::serialize::InputArchive& archive) override {
    torch::optim::serialize<CountState, torch::optim::SGDOptions>(archive, *this);
  }
};

TEST(Sweep, RestoresUserOptimizersThroughTheirSerialization) {
  SweepTask t;
  CountingSgd opt(t.model->parameters(), 0.01);
  warmUp(t, opt, 3);
  std::vector<at::Tensor> params, counts;
  for (auto& p : t.model->parameters()) params.push_back(p.detach().clone());
  auto counts_of = [&] {
    std::vector<at::Tensor> out;
    for (auto& p : t.model->parameters()) {
      out.push_back(static_cast<CountState&>(*opt.state().at(finder::optimizerStateKey(opt.state(), p)))
                        .count()
                        .clone());
    }
    return out;
  };
  counts = counts_of();
  EXPECT_EQ(counts[0].item<float>(), 3.0f);
  auto batches = t.batches();
  finder::SweepOptions o;
  o.num_training = 10;
  finder::runSweep(*t.model, opt, batches, t.loss, o);
  const auto after = counts_of();
  for (std::size_t i = 0; i < counts.size(); ++i) {
    EXPECT_TRUE(torch::equal(counts[i], after[i])) << "step counter " << i;
    EXPECT_TRUE(torch::equal(params[i], t.model->parameters()[i])) << "parameter " << i;
  }
  EXPECT_EQ(opt.param_groups()[0].options().get_lr(), 0.01);
}

TEST(Sweep, WithoutRestoreTheSnapshotSeesTheChange) {
  // Proves the snapshot comparison used above can fail.
  SweepTask t;
  torch::optim::SGD opt(t.model->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
  warmUp(t, opt, 1);
  const Snapshot before(*t.model, opt);
  auto batches = t.batches();
  finder::SweepOptions o;
  o.num_training = 5;
  o.min_lr = 1e-3;
  o.restore_state = false;
  finder::runSweep(*t.model, opt, batches, t.loss, o);
  const Snapshot after(*t.model, opt);
  EXPECT_FALSE(torch::equal(before.params[0], after.params[0]));
  EXPECT_FALSE(torch::equal(before.opt_state[0], after.opt_state[0]));
  EXPECT_NE(before.lrs, after.lrs);
}

TEST(Sweep, FreshOptimizerHasNoStateAfterwards) {
  SweepTask t;
  torch::optim::SGD opt(t.model->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  const Snapshot before(*t.model, opt);
  auto batches = t.batches();
  finder::runSweep(*t.model, opt, batches, t.loss, finder::SweepOptions{});
  EXPECT_TRUE(opt.state().empty());
  before.expectEqual(*t.model, opt);
}

TEST(Sweep, RestoresStateWhenItThrowsMidway) {
  SweepTask t;
  torch::optim::SGD opt(t.model->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
  warmUp(t, opt, 2);
  const Snapshot before(*t.model, opt);
  auto batches = t.batches();
  finder::SweepContext ctx;
  ctx.before_step = [](int64_t step) {
    if (step == 5) throw std::runtime_error("injected failure");
  };
  try {
    finder::runSweep(*t.model, opt, batches, t.loss, finder::SweepOptions{}, ctx);
    FAIL() << "the sweep should have thrown";
  } catch (const CommError& e) {
    EXPECT_NE(std::string(e.what()).find("rank 0, step 5: injected failure"), std::string::npos) << e.what();
  }
  before.expectEqual(*t.model, opt);
}

TEST(Sweep, RecordsTheLossOfEachBatchBeforeItsUpdate) {
  // An independent plain LibTorch loop on a copy of the same weights and batches.
  SweepTask t;
  SweepTask copy;  // same seed: same initial weights
  torch::optim::SGD opt(t.model->parameters(), torch::optim::SGDOptions(1e-5));
  torch::optim::SGD ref_opt(copy.model->parameters(), torch::optim::SGDOptions(1e-5));
  finder::SweepOptions o;
  o.min_lr = 1e-5;
  o.max_lr = 10;
  o.num_training = 40;
  o.beta = 0;
  o.early_stop_threshold.reset();
  auto batches = t.batches();
  const auto r = finder::runSweep(*t.model, opt, batches, t.loss, o);
  ASSERT_EQ(r.stepsCompleted(), 40);

  auto ref_batches = copy.batches();
  copy.model->setTraining(true);
  for (int64_t k = 0; k < 40; ++k) {
    const double lr = finder::scheduledLr(k, o);
    for (auto& g : ref_opt.param_groups()) g.options().set_lr(lr);
    ref_opt.zero_grad();
    auto b = ref_batches.next();
    auto loss = copy.loss(copy.model->forward(b.input), b.target);
    const double expected = loss.item<double>();
    loss.backward();
    ref_opt.step();
    EXPECT_EQ(r.lr[k], lr) << k;
    EXPECT_NEAR(r.loss_raw[k], expected, 1e-12 * std::abs(expected)) << "step " << k;
    EXPECT_EQ(r.loss[k], r.loss_raw[k]) << "beta 0 records the raw loss";
  }
}

TEST(Sweep, AccumulationMatchesOneLargeBatch) {
  finder::SweepOptions o;
  o.min_lr = 1e-4;
  o.max_lr = 0.5;
  o.num_training = 30;
  auto run = [&](int64_t batch, int64_t accumulate) {
    SweepTask t(/*batch_norm=*/false);
    torch::optim::SGD opt(t.model->parameters(), torch::optim::SGDOptions(1e-4));
    auto batches = t.batches(batch, /*shuffle=*/false);
    auto opts = o;
    opts.accumulate = accumulate;
    return finder::runSweep(*t.model, opt, batches, t.loss, opts).loss_raw;
  };
  const auto whole = run(32, 1);
  const auto parts = run(16, 2);
  ASSERT_EQ(whole.size(), parts.size());
  // Same samples, same mean gradient: equal up to float summation order.
  for (std::size_t k = 0; k < whole.size(); ++k) {
    EXPECT_NEAR(parts[k], whole[k], 1e-5 * whole[k]) << k;
  }
}

TEST(Sweep, NonFiniteLossStopsAtOnce) {
  SweepTask t;
  torch::optim::SGD opt(t.model->parameters(), torch::optim::SGDOptions(1e-5));
  auto batches = t.batches();
  int64_t calls = 0;
  finder::LossFn poisoned = [&](const at::Tensor& out, const at::Tensor& y) {
    auto l = t.loss(out, y);
    return calls++ == 6 ? l * std::numeric_limits<float>::quiet_NaN() : l;
  };
  const auto r = finder::runSweep(*t.model, opt, batches, poisoned, finder::SweepOptions{});
  EXPECT_EQ(r.stop_reason, StopReason::kNonFinite);
  EXPECT_EQ(r.stepsCompleted(), 7);
  EXPECT_TRUE(std::isnan(r.loss_raw.back()));
}

class Recorder : public finder::SweepObserver {
 public:
  void onStart(const finder::SweepOptions&, int world) override { world_ = world; }
  void onStep(const finder::StepRecord& r) override { steps_.push_back(r.step); }
  void onEnd(const finder::SweepResult& r) override {
    ++ends_;
    reason_ = r.stop_reason;
  }
  int world_ = 0, ends_ = 0;
  std::vector<int64_t> steps_;
  StopReason reason_ = StopReason::kRunning;
};

TEST(Sweep, ObserverSeesEveryStepInOrderAndOneEnd) {
  SweepTask t;
  torch::optim::SGD opt(t.model->parameters(), torch::optim::SGDOptions(1e-5));
  auto batches = t.batches();
  Recorder rec;
  finder::SweepContext ctx;
  ctx.observer = &rec;
  finder::SweepOptions o;
  o.num_training = 12;
  finder::runSweep(*t.model, opt, batches, t.loss, o, ctx);
  EXPECT_EQ(rec.world_, 1);
  EXPECT_EQ(rec.ends_, 1);
  EXPECT_EQ(rec.reason_, StopReason::kCompleted);
  ASSERT_EQ(rec.steps_.size(), 12u);
  for (int64_t k = 0; k < 12; ++k) EXPECT_EQ(rec.steps_[k], k);
}


// Held-out batches for validation mode: `samples` rows of another seeded set, in batches
// of `batch_size` (the last one shorter).
class HeldOut final : public finder::EvalSource {
 public:
  HeldOut(int64_t samples, int64_t batch_size) {
    const auto data = testing::makeClassification(7, samples);
    for (int64_t i = 0; i < samples; i += batch_size) {
      const int64_t n = std::min(batch_size, samples - i);
      batches_.push_back({data.x.narrow(0, i, n), data.y.narrow(0, i, n)});
    }
  }
  int64_t numBatches() const override { return static_cast<int64_t>(batches_.size()); }
  finder::Batch batch(int64_t index) override {
    if (index == fail_at_) throw std::runtime_error("held-out batch unreadable");
    return batches_[static_cast<std::size_t>(index)];
  }
  std::vector<finder::Batch> batches_;
  int64_t fail_at_ = -1;  // batch() throws for this batch index
};

finder::SweepOptions validationOptions(finder::Monitor monitor) {
  finder::SweepOptions o;
  o.min_lr = 1e-4;
  o.max_lr = 10;
  o.num_training = 30;
  o.early_stop_threshold.reset();
  o.monitor = monitor;
  return o;
}

TEST(Sweep, ValidationLossIsAHandWrittenEvaluationAfterEachUpdate) {
  // BatchNorm: evaluation must run in eval mode (running statistics), and training must
  // go on in train mode after it.
  SweepTask t;
  SweepTask copy;
  torch::optim::SGD opt(t.model->parameters(), torch::optim::SGDOptions(1e-4).momentum(0.9));
  torch::optim::SGD ref_opt(copy.model->parameters(), torch::optim::SGDOptions(1e-4).momentum(0.9));
  const Snapshot before(*t.model, opt);
  auto o = validationOptions(finder::Monitor::kVal);
  o.beta = 0;
  HeldOut held_out(200, 64);  // 64, 64, 64, 8: the mean weighs each batch by its size
  finder::SweepContext ctx;
  ctx.validation = &held_out;
  auto batches = t.batches();
  const auto r = finder::runSweep(*t.model, opt, batches, t.loss, o, ctx);
  ASSERT_EQ(r.stepsCompleted(), 30);
  ASSERT_EQ(r.val_loss.size(), 30u);
  ASSERT_EQ(r.eval_seconds.size(), 30u);
  before.expectEqual(*t.model, opt);

  auto ref_batches = copy.batches();
  for (int64_t k = 0; k < 30; ++k) {
    copy.model->setTraining(true);
    for (auto& g : ref_opt.param_groups()) g.options().set_lr(finder::scheduledLr(k, o));
    ref_opt.zero_grad();
    auto b = ref_batches.next();
    auto loss = copy.loss(copy.model->forward(b.input), b.target);
    const double train_loss = loss.item<double>();
    loss.backward();
    ref_opt.step();
    copy.model->setTraining(false);
    double sum = 0;
    int64_t seen = 0;
    {
      torch::NoGradGuard no_grad;
      for (const auto& vb : held_out.batches_) {
        sum += copy.loss(copy.model->forward(vb.input), vb.target).item<double>() * vb.input.size(0);
        seen += vb.input.size(0);
      }
    }
    const double val_loss = sum / static_cast<double>(seen);
    EXPECT_NEAR(r.loss_raw[k], train_loss, 1e-6 * std::abs(train_loss)) << "step " << k;
    EXPECT_NEAR(r.val_loss[k], val_loss, 1e-6 * std::abs(val_loss)) << "step " << k;
    EXPECT_EQ(r.loss[k], r.val_loss[k]) << "beta 0: the monitored raw loss";
    EXPECT_GE(r.eval_seconds[k], 0.0);
  }
}

TEST(Sweep, MonitorChoosesTheCurveThatIsSmoothedStoppedOnAndSuggestedFrom) {
  auto run = [](finder::Monitor monitor) {
    SweepTask t;
    torch::optim::SGD opt(t.model->parameters(), torch::optim::SGDOptions(1e-4));
    HeldOut held_out(256, 64);
    finder::SweepContext ctx;
    ctx.validation = &held_out;
    auto batches = t.batches();
    return finder::runSweep(*t.model, opt, batches, t.loss, validationOptions(monitor), ctx);
  };
  const auto train = run(finder::Monitor::kTrain);
  const auto val = run(finder::Monitor::kVal);
  ASSERT_EQ(train.stepsCompleted(), 30);
  ASSERT_EQ(val.stepsCompleted(), 30);
  // Both record both losses, the same ones (the training does not depend on the monitor).
  EXPECT_EQ(train.val_loss, val.val_loss);
  EXPECT_EQ(train.loss_raw, val.loss_raw);
  // `loss` is the smoothed monitored curve.
  auto smoothed = [](const std::vector<double>& raw) {
    finder::EmaSmoother ema(0.98);
    std::vector<double> out;
    for (double x : raw) out.push_back(ema.update(x));
    return out;
  };
  EXPECT_EQ(train.loss, smoothed(train.loss_raw));
  EXPECT_EQ(val.loss, smoothed(val.val_loss));
  // The suggestions come from that curve.
  auto steepest = [](const finder::SweepResult& r) {
    return finder::suggest(finder::SuggestMethod::kSteepest, {r.lr, r.loss, finder::Mode::kExponential, 10, 1});
  };
  EXPECT_EQ(train.suggestion().index, steepest(train).index);
  EXPECT_EQ(val.suggestion().index, steepest(val).index);
  EXPECT_NE(train.loss, val.loss);
}

TEST(Sweep, MonitorValWithoutValidationDataIsRefused) {
  SweepTask t;
  torch::optim::SGD opt(t.model->parameters(), torch::optim::SGDOptions(1e-4));
  auto batches = t.batches();
  try {
    finder::runSweep(*t.model, opt, batches, t.loss, validationOptions(finder::Monitor::kVal));
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("monitor"), std::string::npos) << e.what();
  }
}

TEST(Sweep, AFailingEvaluationEndsTheSweepNamingTheStepAndRestores) {
  SweepTask t;
  torch::optim::SGD opt(t.model->parameters(), torch::optim::SGDOptions(1e-4));
  const Snapshot before(*t.model, opt);
  HeldOut held_out(256, 64);
  finder::SweepContext ctx;
  ctx.validation = &held_out;
  Recorder rec;
  ctx.observer = &rec;
  auto batches = t.batches();
  // Four batches per evaluation: the 2nd batch of the 4th evaluation (step 3) fails.
  int64_t step = -1;
  ctx.before_step = [&](int64_t k) {
    step = k;
    held_out.fail_at_ = k == 3 ? 1 : -1;
  };
  try {
    finder::runSweep(*t.model, opt, batches, t.loss, validationOptions(finder::Monitor::kVal), ctx);
    FAIL() << "expected the evaluation's failure";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("step 3: held-out batch unreadable"), std::string::npos) << e.what();
  }
  EXPECT_EQ(step, 3);
  EXPECT_EQ(rec.steps_.size(), 3u) << "steps 0-2 recorded, not the failed one";
  EXPECT_EQ(rec.reason_, StopReason::kError);
  before.expectEqual(*t.model, opt);
}


// A user's optimizer with two param groups, the second at 10x the first: the sweep keeps
// that ratio at every step (the first group follows the schedule), as a hand-written loop
// with the same two groups does, and restores both lrs.
TEST(Sweep, ParamGroupsKeepTheirInitialRatioToTheFirstGroup) {
  auto twoGroups = [](SweepTask& t) {
    std::vector<torch::optim::OptimizerParamGroup> groups;
    const auto params = t.net->parameters();
    std::vector<at::Tensor> body(params.begin(), params.end() - 2), head(params.end() - 2, params.end());
    groups.emplace_back(body, std::make_unique<torch::optim::SGDOptions>(torch::optim::SGDOptions(1e-3).momentum(0.9)));
    groups.emplace_back(head, std::make_unique<torch::optim::SGDOptions>(torch::optim::SGDOptions(1e-2).momentum(0.9)));
    return std::make_unique<torch::optim::SGD>(groups, torch::optim::SGDOptions(1e-3).momentum(0.9));
  };
  SweepTask t(/*batch_norm=*/false), copy(/*batch_norm=*/false);
  auto opt = twoGroups(t);
  auto ref_opt = twoGroups(copy);
  finder::SweepOptions o;
  o.min_lr = 1e-4;
  o.max_lr = 1;
  o.num_training = 30;
  o.early_stop_threshold.reset();
  auto batches = t.batches();
  const auto r = finder::runSweep(*t.model, *opt, batches, t.loss, o);
  ASSERT_EQ(r.group_lr.size(), 30u);
  EXPECT_EQ(opt->param_groups()[0].options().get_lr(), 1e-3);
  EXPECT_EQ(opt->param_groups()[1].options().get_lr(), 1e-2);

  auto ref_batches = copy.batches();
  copy.model->setTraining(true);
  for (int64_t k = 0; k < 30; ++k) {
    const double lr = finder::scheduledLr(k, o);
    ref_opt->param_groups()[0].options().set_lr(lr);
    ref_opt->param_groups()[1].options().set_lr(10 * lr);
    ref_opt->zero_grad();
    auto b = ref_batches.next();
    auto loss = copy.loss(copy.model->forward(b.input), b.target);
    const double expected = loss.item<double>();
    loss.backward();
    ref_opt->step();
    EXPECT_EQ(r.lr[k], lr);
    ASSERT_EQ(r.group_lr[k].size(), 2u);
    EXPECT_EQ(r.group_lr[k][0], lr);
    EXPECT_NEAR(r.group_lr[k][1], 10 * lr, 1e-15 * lr);
    EXPECT_NEAR(r.loss_raw[k], expected, 1e-6 * std::abs(expected)) << "step " << k;
  }
  // A zero first lr leaves no ratio to keep.
  opt->param_groups()[0].options().set_lr(0);
  EXPECT_THROW(finder::runSweep(*t.model, *opt, batches, t.loss, o), InputError);
}


// bf16 autocast: the sweep runs, the float32 model and optimizer come back bit for bit,
// and the curve stays near the fp32 one over 30 steps at small lrs. The bound: bfloat16
// keeps 8 significant bits, so each logit is rounded by at most 2^-8 of itself (0.4%);
// cross-entropy moves by at most that much times the largest logit (about 3 here) per
// sample, 1% of a loss near 2.3 in the worst case. The mean over the batch averages the
// roundings, so the measured gap is far smaller; the check is the worst case, 1e-2.
TEST(Sweep, Bf16KeepsFloat32WeightsAndStaysNearTheFp32Curve) {
  // An MLP, the same with BatchNorm, and a small CNN with BatchNorm2d (the 32 features as
  // 2x4x4 images).
  const std::vector<std::pair<std::string, std::function<torch::nn::Sequential()>>> nets = {
      {"MLP", [] { return torch::nn::Sequential(torch::nn::Linear(32, 64), torch::nn::ReLU(), torch::nn::Linear(64, 10)); }},
      {"BatchNorm MLP",
       [] {
         return torch::nn::Sequential(torch::nn::Linear(32, 64), torch::nn::BatchNorm1d(64), torch::nn::ReLU(),
                                      torch::nn::Linear(64, 10));
       }},
      {"CNN", [] {
         return torch::nn::Sequential(torch::nn::Unflatten(torch::nn::UnflattenOptions(1, {2, 4, 4})),
                                      torch::nn::Conv2d(torch::nn::Conv2dOptions(2, 8, 3).padding(1)),
                                      torch::nn::BatchNorm2d(8), torch::nn::ReLU(), torch::nn::Flatten(),
                                      torch::nn::Linear(8 * 4 * 4, 10));
       }}};
  for (const auto& [name, make] : nets) {
    auto run = [&, make = make](finder::Precision precision) {
      torch::manual_seed(0);
      auto net = make();
      auto model = finder::makeModel(net);
      torch::optim::Adam opt(model->parameters(), torch::optim::AdamOptions(1e-5));
      const Snapshot before(*model, opt);
      finder::SweepOptions o;
      o.min_lr = 1e-5;
      o.max_lr = 1e-2;
      o.num_training = 30;
      o.precision = precision;
      testing::TensorBatches batches(testing::makeClassification(0), 32, /*shuffle=*/true);
      const auto r = finder::runSweep(*model, opt, batches, testing::crossEntropy(), o);
      before.expectEqual(*model, opt);
      for (const auto& p : model->parameters()) EXPECT_EQ(p.scalar_type(), at::kFloat);
      return r.loss_raw;
    };
    const auto fp32 = run(finder::Precision::kFp32);
    const auto bf16 = run(finder::Precision::kBf16);
    ASSERT_EQ(fp32.size(), 30u) << name;
    ASSERT_EQ(bf16.size(), 30u) << name;
    double worst = 0;
    for (std::size_t k = 0; k < fp32.size(); ++k) worst = std::max(worst, std::abs(bf16[k] - fp32[k]) / fp32[k]);
    std::printf("%s: bf16 vs fp32 over 30 steps, largest relative gap %.2g\n", name.c_str(), worst);
    EXPECT_LT(worst, 1e-2) << name;
    EXPECT_GT(worst, 0.0) << name << ": autocast did not run in bfloat16";
  }
}


// Dynamic loss scaling, on the CPU in float32 (fp16 itself needs CUDA: gpu_test): a loss
// that overflows once the scale multiplies it makes its step skip its update and halves
// the scale; the other steps are those of an unscaled sweep bit for bit (the scale is a
// power of two), and the model comes back as it was.
TEST(Sweep, LossScalingSkipsAnOverflowingStepAndHalvesTheScale) {
  auto run = [](bool scaling, std::vector<at::Tensor>* at_step) {
    SweepTask t(/*batch_norm=*/false);
    torch::optim::SGD opt(t.model->parameters(), torch::optim::SGDOptions(1e-4).momentum(0.9));
    const Snapshot before(*t.model, opt);
    finder::SweepOptions o;
    o.min_lr = 1e-4;
    o.max_lr = 1e-1;
    o.num_training = 12;
    o.early_stop_threshold.reset();
    o.beta = 0;
    o.dynamic_loss_scale = scaling;
    int64_t step = 0;
    finder::SweepContext ctx;
    ctx.before_step = [&](int64_t k) {
      step = k;
      if (at_step != nullptr) at_step->push_back(t.model->parameters()[0].detach().clone());
    };
    // Step 5's loss times 2^16 overflows float32: every gradient becomes inf or NaN.
    finder::LossFn loss = [&](const at::Tensor& out, const at::Tensor& y) {
      const auto l = t.loss(out, y);
      return step == 5 && scaling ? l * 1e36 : l;
    };
    auto batches = t.batches();
    const auto r = finder::runSweep(*t.model, opt, batches, loss, o, ctx);
    before.expectEqual(*t.model, opt);
    return r;
  };
  std::vector<at::Tensor> params;
  const auto scaled = run(true, &params);
  const auto plain = run(false, nullptr);
  ASSERT_EQ(scaled.stepsCompleted(), 12);
  ASSERT_EQ(scaled.loss_scale.size(), 12u);
  ASSERT_EQ(scaled.skipped.size(), 12u);
  EXPECT_TRUE(plain.loss_scale.empty());
  for (int64_t k = 0; k < 12; ++k) {
    EXPECT_EQ(scaled.skipped[k], k == 5 ? 1 : 0) << "step " << k;
    EXPECT_EQ(scaled.loss_scale[k], k <= 5 ? 65536.0 : 32768.0) << "step " << k;
  }
  EXPECT_TRUE(at::equal(params[6], params[5])) << "the skipped step moved the weights";
  EXPECT_FALSE(at::equal(params[5], params[4]));
  for (int64_t k = 0; k < 5; ++k) EXPECT_EQ(scaled.loss_raw[k], plain.loss_raw[k]) << "step " << k;
  EXPECT_GT(scaled.loss_raw[5], 1e30) << "the recorded loss is the step's own, unscaled";
}

TEST(Sweep, LossScaleDoublesAfter2000FiniteStepsAndHalvesOnOverflow) {
  finder::LossScaler s;
  EXPECT_EQ(s.scale(), 65536.0);
  for (int i = 0; i < 1999; ++i) s.update(true);
  EXPECT_EQ(s.scale(), 65536.0);
  s.update(true);
  EXPECT_EQ(s.scale(), 131072.0);
  s.update(false);
  EXPECT_EQ(s.scale(), 65536.0);
  for (int i = 0; i < 1999; ++i) s.update(true);
  s.update(false);  // an overflow restarts the count
  for (int i = 0; i < 1999; ++i) s.update(true);
  EXPECT_EQ(s.scale(), 32768.0);
}

}  // namespace
}  // namespace lrfind
