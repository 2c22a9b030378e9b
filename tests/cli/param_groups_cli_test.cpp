// Parameter groups end to end through lrfind_dist: --param-group REGEX=MULT trains each
// group at its multiple of the scheduled lr, as a hand-written LibTorch loop with two
// param groups does, on one process and on two ranks.

#include <cmath>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/nn/functional/loss.h>
#include <torch/optim/sgd.h>
#include <torch/script.h>

#include "cli_util.h"
#include "finder/schedule.h"
#include "runtime/dataset.h"
#include "runtime/results.h"

namespace lrfind {
namespace {

using namespace lrfind::testing;

constexpr int64_t kSteps = 25;
constexpr int64_t kBatch = 32;

finder::SweepOptions schedule() {
  finder::SweepOptions o;
  o.min_lr = 1e-4;
  o.max_lr = 1;
  o.num_training = kSteps;
  return o;
}

const std::string kArgs = "--model m.pt --data d.h5 --param-group '^w2$=10' --no-shuffle --optimizer sgd "
                          "--momentum 0.9 --num-training 25 --min-lr 1e-4 --max-lr 1 --early-stop-threshold none "
                          "--plot '' ";

TEST(ParamGroupsCli, EachGroupTrainsAtItsMultipleAsAHandWrittenLoopDoes) {
  TempDir dir;
  writeClassification(dir.file("d.h5"), 256, 16, 4);
  saveScriptModel(dir.file("m.pt"), 16, 4);  // parameters w1, b1, w2
  const auto run = runCli(dir, kArgs + "--batch-size 32 --json r.json --out r.h5");
  ASSERT_EQ(run.code, 0) << run.err;
  const auto r = runtime::readResults(dir.file("r.h5"));
  ASSERT_EQ(r.lr.size(), static_cast<std::size_t>(kSteps));

  // The recorded groups and their lrs.
  ASSERT_EQ(r.param_groups.size(), 2u);
  EXPECT_EQ(r.param_groups[0].strings.at("pattern"), "");
  EXPECT_EQ(r.param_groups[0].numbers.at("multiplier"), 1.0);
  EXPECT_EQ(r.param_groups[0].parameters, (std::vector<std::string>{"w1", "b1"}));
  EXPECT_EQ(r.param_groups[0].numbers.at("numel"), 16 * 32 + 32);
  EXPECT_EQ(r.param_groups[1].strings.at("pattern"), "^w2$");
  EXPECT_EQ(r.param_groups[1].numbers.at("multiplier"), 10.0);
  EXPECT_EQ(r.param_groups[1].parameters, (std::vector<std::string>{"w2"}));
  EXPECT_EQ(r.param_groups[1].numbers.at("num_params"), 1);
  EXPECT_DOUBLE_EQ(r.param_groups[1].numbers.at("suggested_lr"), 10 * r.numbers.at("suggested_lr"));
  ASSERT_EQ(r.group_lr.size(), static_cast<std::size_t>(kSteps));
  for (int64_t k = 0; k < kSteps; ++k) {
    const double lr = finder::scheduledLr(k, schedule());
    EXPECT_EQ(r.lr[k], lr);
    EXPECT_EQ(r.group_lr[k][0], lr);
    EXPECT_DOUBLE_EQ(r.group_lr[k][1], 10 * lr);
  }
  EXPECT_NE(run.out.find("lr per param group at the suggestion:"), std::string::npos) << run.out;
  EXPECT_NE(slurp(dir.file("r.json")).find("\"pattern\": \"^w2$\""), std::string::npos);

  // The same model, data and batches (file order) through LibTorch alone: SGD with two
  // param groups, the second at 10x.
  auto module = torch::jit::load(dir.file("m.pt"));
  module.train();
  std::vector<at::Tensor> body, head;
  for (const auto& p : module.named_parameters()) (p.name == "w2" ? head : body).push_back(p.value);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  // A group's options replace the defaults: each carries the momentum.
  groups.emplace_back(body, std::make_unique<torch::optim::SGDOptions>(torch::optim::SGDOptions(1e-4).momentum(0.9)));
  groups.emplace_back(head, std::make_unique<torch::optim::SGDOptions>(torch::optim::SGDOptions(1e-3).momentum(0.9)));
  torch::optim::SGD opt(std::move(groups), torch::optim::SGDOptions(1e-4).momentum(0.9));
  const auto data = runtime::loadHdf5(dir.file("d.h5"));
  for (int64_t k = 0; k < kSteps; ++k) {
    const double lr = finder::scheduledLr(k, schedule());
    opt.param_groups()[0].options().set_lr(lr);
    opt.param_groups()[1].options().set_lr(10 * lr);
    opt.zero_grad();
    const int64_t start = (k * kBatch) % data.size();
    const auto out = module.forward({data.x.narrow(0, start, kBatch)}).toTensor();
    auto loss = torch::nn::functional::cross_entropy(out, data.y.narrow(0, start, kBatch));
    const double expected = loss.item<double>();
    loss.backward();
    opt.step();
    EXPECT_NEAR(r.loss_raw[k], expected, 1e-6 * std::abs(expected)) << "step " << k;
  }

  // Two ranks with half the batch each: the curve of one process within the data-parallel
  // bound (float summation order), the same group lrs.
  const auto np2 = runCli(dir, kArgs + "--batch-size 16 --out np2.h5", mpirun(2));
  ASSERT_EQ(np2.code, 0) << np2.err;
  const auto two = runtime::readResults(dir.file("np2.h5"));
  EXPECT_EQ(two.group_lr, r.group_lr);
  ASSERT_EQ(two.loss_raw.size(), r.loss_raw.size());
  for (std::size_t k = 0; k < r.loss_raw.size(); ++k) {
    EXPECT_NEAR(two.loss_raw[k], r.loss_raw[k], 1e-5 * std::abs(r.loss_raw[k])) << "np 2, step " << k;
  }
}

// Without --param-group every parameter is in the one default group, and the curve is
// the one of a run that never heard of groups: the group is recorded all the same.
TEST(ParamGroupsCli, OneGroupByDefaultAndNoDecayTwinsWithTheFlag) {
  TempDir dir;
  writeClassification(dir.file("d.h5"), 256, 16, 4);
  saveScriptModel(dir.file("m.pt"), 16, 4);
  const std::string common = "--model m.pt --data d.h5 --optimizer adamw --weight-decay 0.05 --num-training 15 "
                             "--plot '' ";
  ASSERT_EQ(runCli(dir, common + "--out one.h5").code, 0);
  const auto one = runtime::readResults(dir.file("one.h5"));
  ASSERT_EQ(one.param_groups.size(), 1u);
  EXPECT_EQ(one.param_groups[0].parameters, (std::vector<std::string>{"w1", "b1", "w2"}));
  EXPECT_EQ(one.param_groups[0].numbers.at("weight_decay"), 0.05);
  for (std::size_t k = 0; k < one.lr.size(); ++k) EXPECT_EQ(one.group_lr[k], std::vector<double>{one.lr[k]});

  const auto flagged = runCli(dir, common + "--no-decay-bias-norm --out nd.h5");
  ASSERT_EQ(flagged.code, 0) << flagged.err;
  const auto nd = runtime::readResults(dir.file("nd.h5"));
  ASSERT_EQ(nd.param_groups.size(), 2u);
  EXPECT_EQ(nd.param_groups[0].parameters, (std::vector<std::string>{"w1", "w2"}));
  EXPECT_EQ(nd.param_groups[1].parameters, (std::vector<std::string>{"b1"})) << "1-D: no decay";
  EXPECT_EQ(nd.param_groups[1].numbers.at("weight_decay"), 0.0);
  EXPECT_EQ(nd.param_groups[1].numbers.at("multiplier"), 1.0);
  EXPECT_EQ(nd.loss_raw.front(), one.loss_raw.front()) << "the first step's loss comes before any update";
  EXPECT_NE(nd.loss_raw.back(), one.loss_raw.back()) << "the bias without decay trains differently";
}

}  // namespace
}  // namespace lrfind
