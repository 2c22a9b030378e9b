#include "finder/sweep.h"

#include <cmath>
#include <limits>
#include <sstream>

#include <gtest/gtest.h>
#include <torch/nn.h>
#include <torch/optim.h>
#include <torch/script.h>

#include "comm/errors.h"
#include "finder/schedule.h"
#include "finder/state_guard.h"
#include "runtime/batches.h"
#include "runtime/dataset.h"
#include "runtime/factories.h"
#include "runtime/models.h"

namespace lrfind {
namespace {

using finder::StopReason;

struct Task {
  runtime::Dataset data = runtime::makeSynthetic(0);
  torch::nn::Sequential net{nullptr};
  std::unique_ptr<finder::Model> model;
  finder::LossFn loss = runtime::makeLoss("cross_entropy");

  explicit Task(bool batch_norm = true) {
    torch::manual_seed(0);
    // BatchNorm gives the model buffers, which the guard must restore too.
    net = batch_norm ? torch::nn::Sequential(torch::nn::Linear(32, 64), torch::nn::BatchNorm1d(64),
                                             torch::nn::ReLU(), torch::nn::Linear(64, 10))
                     : torch::nn::Sequential(torch::nn::Linear(32, 64), torch::nn::ReLU(),
                                             torch::nn::Linear(64, 10));
    model = finder::makeModel(net);
  }
  runtime::ShardedBatches batches(int64_t batch_size = 32, bool shuffle = true) const {
    runtime::BatchPlan plan;
    plan.batch_size = batch_size;
    plan.shuffle = shuffle;
    return runtime::ShardedBatches(data, plan, c10::Device(c10::DeviceType::CPU));
  }
};

// Everything the guard promises to restore, deep-copied.
struct Snapshot {
  std::vector<at::Tensor> params, grads, buffers, opt_state;
  std::vector<double> lrs;
  std::size_t state_entries = 0;
  bool training = false;

  Snapshot(finder::Model& m, torch::optim::Optimizer& opt) {
    for (auto& p : m.parameters()) {
      params.push_back(p.detach().clone());
      grads.push_back(p.grad().defined() ? p.grad().clone() : at::Tensor());
    }
    for (auto& b : m.buffers()) buffers.push_back(b.detach().clone());
    opt_state = optimizerTensors(m, opt);
    state_entries = opt.state().size();
    for (auto& g : opt.param_groups()) lrs.push_back(g.options().get_lr());
    training = m.isTraining();
  }

  static std::vector<at::Tensor> optimizerTensors(finder::Model& m, torch::optim::Optimizer& opt) {
    std::vector<at::Tensor> out;
    for (auto& p : m.parameters()) {
      auto it = opt.state().find(finder::optimizerStateKey(opt.state(), p));
      if (it == opt.state().end()) continue;
      if (auto* sgd = dynamic_cast<torch::optim::SGDParamState*>(it->second.get())) {
        out.push_back(sgd->momentum_buffer().clone());
      } else if (auto* adam = dynamic_cast<torch::optim::AdamParamState*>(it->second.get())) {
        out.push_back(adam->exp_avg().clone());
        out.push_back(adam->exp_avg_sq().clone());
        out.push_back(at::tensor(static_cast<double>(adam->step())));
      } else if (auto* adamw = dynamic_cast<torch::optim::AdamWParamState*>(it->second.get())) {
        out.push_back(adamw->exp_avg().clone());
        out.push_back(adamw->exp_avg_sq().clone());
        out.push_back(at::tensor(static_cast<double>(adamw->step())));
      } else if (auto* rms = dynamic_cast<torch::optim::RMSpropParamState*>(it->second.get())) {
        out.push_back(rms->square_avg().clone());
        out.push_back(rms->momentum_buffer().clone());
        out.push_back(at::tensor(static_cast<double>(rms->step())));
      } else if (auto* ada = dynamic_cast<torch::optim::AdagradParamState*>(it->second.get())) {
        out.push_back(ada->sum().clone());
        out.push_back(at::tensor(static_cast<double>(ada->step())));
      } else {
        ADD_FAILURE() << "unknown optimizer state type in the test snapshot";
      }
    }
    return out;
  }

  void expectEqual(finder::Model& m, torch::optim::Optimizer& opt) const {
    Snapshot now(m, opt);
    auto same = [](const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b, const char* what) {
      ASSERT_EQ(a.size(), b.size()) << what;
      for (std::size_t i = 0; i < a.size(); ++i) {
        ASSERT_EQ(a[i].defined(), b[i].defined()) << what << " " << i;
        if (a[i].defined()) {
          EXPECT_TRUE(torch::equal(a[i], b[i])) << what << " " << i << " differs";
        }
      }
    };
    same(params, now.params, "parameter");
    same(grads, now.grads, "gradient");
    same(buffers, now.buffers, "buffer");
    same(opt_state, now.opt_state, "optimizer state");
    EXPECT_EQ(state_entries, now.state_entries);
    EXPECT_EQ(lrs, now.lrs);
    EXPECT_EQ(training, now.training);
  }
};

void warmUp(Task& t, torch::optim::Optimizer& opt, int steps) {
  auto batches = t.batches();
  for (int i = 0; i < steps; ++i) {
    opt.zero_grad();
    auto b = batches.next();
    t.loss(t.model->forward(b.input), b.target).backward();
    opt.step();
  }
}

TEST(Sweep, LossFallsThenDiverges) {
  Task t;
  torch::optim::SGD opt(t.model->parameters(), torch::optim::SGDOptions(1e-4));
  auto batches = t.batches();
  finder::SweepOptions o;
  o.min_lr = 1e-4;
  o.max_lr = 1e3;
  const auto r = finder::runSweep(*t.model, opt, batches, t.loss, o);
  EXPECT_EQ(r.stop_reason, StopReason::kDiverged);
  EXPECT_LT(r.stepsCompleted(), o.num_training);
  const double best = *std::min_element(r.loss.begin(), r.loss.end());
  EXPECT_LT(best, 0.5 * r.loss.front()) << "the loss should fall well below its start";
  EXPECT_GT(r.loss.back(), 4.0 * best) << "and then diverge";
  ASSERT_TRUE(r.suggestion().found);
  EXPECT_GT(r.suggestion().lr, o.min_lr);
  EXPECT_LT(r.suggestion().lr, r.lr.back());
}

TEST(Sweep, RestoresSgdMomentumStateBitForBit) {
  Task t;
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
  Task t;
  torch::optim::Adam opt(t.model->parameters(), torch::optim::AdamOptions(1e-3));
  warmUp(t, opt, 2);
  const Snapshot before(*t.model, opt);
  auto batches = t.batches();
  finder::runSweep(*t.model, opt, batches, t.loss, finder::SweepOptions{});
  before.expectEqual(*t.model, opt);
}

TEST(Sweep, RestoresEveryBuiltInOptimizer) {
  for (const auto& name : runtime::optimizerNames()) {
    Task t;
    runtime::OptimizerConfig cfg;
    cfg.name = name;
    cfg.lr = 1e-3;
    if (name == "sgd" || name == "rmsprop") cfg.momentum = 0.9;
    auto opt = runtime::makeOptimizer(t.model->parameters(), cfg);
    warmUp(t, *opt, 2);
    const Snapshot before(*t.model, *opt);
    ASSERT_FALSE(before.opt_state.empty()) << name;
    auto batches = t.batches();
    finder::SweepOptions o;
    o.num_training = 20;
    finder::runSweep(*t.model, *opt, batches, t.loss, o);
    SCOPED_TRACE(name);
    before.expectEqual(*t.model, *opt);
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
  Task t;
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
  Task t;
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
  Task t;
  torch::optim::SGD opt(t.model->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  const Snapshot before(*t.model, opt);
  auto batches = t.batches();
  finder::runSweep(*t.model, opt, batches, t.loss, finder::SweepOptions{});
  EXPECT_TRUE(opt.state().empty());
  before.expectEqual(*t.model, opt);
}

TEST(Sweep, RestoresStateWhenItThrowsMidway) {
  Task t;
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
  Task t;
  Task copy;  // same seed: same initial weights
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
    Task t(/*batch_norm=*/false);
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
  Task t;
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
  Task t;
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

TEST(Sweep, TrainsATorchScriptModel) {
  torch::manual_seed(1);
  torch::jit::Module m("Net");
  m.register_parameter("w1", (torch::randn({32, 16}) * 0.2).set_requires_grad(true), false);
  m.register_parameter("b1", torch::zeros({16}).set_requires_grad(true), false);
  m.register_parameter("w2", (torch::randn({16, 10}) * 0.2).set_requires_grad(true), false);
  m.define(R"(
def forward(self, x):
    h = torch.relu(torch.matmul(x, self.w1) + self.b1)
    return torch.matmul(h, self.w2)
)");
  auto model = runtime::wrapScriptModule(m);
  ASSERT_EQ(model->parameters().size(), 3u);
  const auto data = runtime::makeSynthetic(3);
  runtime::BatchPlan plan;
  runtime::ShardedBatches batches(data, plan, c10::Device(c10::DeviceType::CPU));
  torch::optim::SGD opt(model->parameters(), torch::optim::SGDOptions(1e-4));
  const Snapshot before(*model, opt);
  finder::SweepOptions o;
  o.min_lr = 1e-4;
  o.max_lr = 1e3;
  const auto r = finder::runSweep(*model, opt, batches, runtime::makeLoss("cross_entropy"), o);
  const double best = *std::min_element(r.loss.begin(), r.loss.end());
  EXPECT_LT(best, 0.6 * r.loss.front()) << "the TorchScript model must actually train";
  EXPECT_EQ(r.stop_reason, StopReason::kDiverged);
  before.expectEqual(*model, opt);
}

}  // namespace
}  // namespace lrfind
