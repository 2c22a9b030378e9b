// Sweeps that need runtime's pieces: runtime's synthetic set and batches (a test whose
// numbers hold for that data), every optimizer runtime::makeOptimizer builds restored by
// the guard, and a TorchScript model wrapped by runtime::wrapScriptModule. Links
// lrfind_runtime; the sweep loop itself is tested on finder/ alone in sweep_test.cpp.
#include <algorithm>
#include <string>

#include <gtest/gtest.h>
#include <torch/optim.h>
#include <torch/script.h>

#include "finder/sweep.h"
#include "runtime/batches.h"
#include "runtime/dataset.h"
#include "runtime/factories.h"
#include "runtime/models.h"
#include "unit/sweep_fixture.h"

namespace lrfind {
namespace {

using finder::StopReason;
using testing::Snapshot;
using testing::SweepTask;

TEST(Sweep, LossFallsThenDiverges) {
  // On runtime's synthetic set and batches, for which the 0.5 below holds (by a small
  // margin: it is a property of this data, not of every learnable set).
  SweepTask t;  // its model; the data, batches and loss are runtime's
  const auto data = runtime::makeSynthetic(0);
  runtime::ShardedBatches batches(data, runtime::BatchPlan{}, c10::Device(c10::DeviceType::CPU));
  const auto loss = runtime::makeLoss("cross_entropy");
  torch::optim::SGD opt(t.model->parameters(), torch::optim::SGDOptions(1e-4));
  finder::SweepOptions o;
  o.min_lr = 1e-4;
  o.max_lr = 1e3;
  const auto r = finder::runSweep(*t.model, opt, batches, loss, o);
  EXPECT_EQ(r.stop_reason, StopReason::kDiverged);
  EXPECT_LT(r.stepsCompleted(), o.num_training);
  const double best = *std::min_element(r.loss.begin(), r.loss.end());
  EXPECT_LT(best, 0.5 * r.loss.front()) << "the loss should fall well below its start";
  EXPECT_GT(r.loss.back(), 4.0 * best) << "and then diverge";
  ASSERT_TRUE(r.suggestion().found);
  EXPECT_GT(r.suggestion().lr, o.min_lr);
  EXPECT_LT(r.suggestion().lr, r.lr.back());
}

TEST(Sweep, RestoresEveryBuiltInOptimizer) {
  for (const auto& name : runtime::optimizerNames()) {
    SweepTask t;
    runtime::OptimizerConfig cfg;
    cfg.name = name;
    cfg.lr = 1e-3;
    if (name == "sgd" || name == "rmsprop") cfg.momentum = 0.9;
    auto opt = runtime::makeOptimizer(t.model->parameters(), cfg);
    testing::expectSweepRestores(t, *opt, name);
  }
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
