// The public API, linked as a user links it (lrfind::lrfind and nothing else of ours):
// its errors name the library's own fields, never the command line's flags.

#include "lrfind/lrfind.h"

#include <stdexcept>
#include <string>

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace {

std::string findLrError(const lrfind::Options& options) {
  torch::manual_seed(0);
  torch::nn::Sequential net(torch::nn::Linear(4, 2));
  torch::optim::SGD opt(net->parameters(), torch::optim::SGDOptions(0.1));
  auto next = [] { return std::make_pair(torch::randn({8, 4}), torch::randint(0, 2, {8})); };
  auto loss = [](const torch::Tensor& out, const torch::Tensor& t) {
    return torch::nn::functional::cross_entropy(out, t);
  };
  try {
    lrfind::findLr(net, opt, next, loss, options);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "no error";
}

TEST(Library, ErrorsNameTheOptionsFieldsNotFlags) {
  lrfind::Options o;
  o.min_lr = 0;
  EXPECT_EQ(findLrError(o), "lrfind::findLr: min_lr must be a positive number, got 0");
  o = {};
  o.max_lr = o.min_lr;
  EXPECT_EQ(findLrError(o), "lrfind::findLr: max_lr must be greater than min_lr (1e-08), got 1e-08");
  o = {};
  o.num_training = 1;
  EXPECT_EQ(findLrError(o), "lrfind::findLr: num_training must be at least 2, got 1");
  o = {};
  o.mode = "exp";
  EXPECT_EQ(findLrError(o), "lrfind::findLr: mode must be exponential or linear, got \"exp\"");
  o = {};
  o.suggest = "best";
  EXPECT_EQ(findLrError(o),
            "lrfind::findLr: suggest must be one of steepest, valley, minimum, steep, slide; got \"best\"");
  o = {};
  o.accumulate = 0;
  const std::string text = findLrError(o);
  EXPECT_EQ(text.find("--"), std::string::npos) << text;
  EXPECT_NE(text.find("accumulate"), std::string::npos) << text;
  o = {};
  o.monitor = "val";
  EXPECT_EQ(findLrError(o), "lrfind::findLr: monitor \"val\" needs val_data");
  o.monitor = "test";
  EXPECT_EQ(findLrError(o), "lrfind::findLr: monitor must be train or val, got \"test\"");
}

// val_data: the held-out loss after every step, monitored by default; the module comes
// back in train mode with its weights.
TEST(Library, ValDataGivesTheHeldOutLossAfterEachStep) {
  torch::manual_seed(0);
  torch::nn::Sequential net(torch::nn::Linear(4, 8), torch::nn::ReLU(), torch::nn::Linear(8, 2));
  torch::optim::SGD opt(net->parameters(), torch::optim::SGDOptions(0.1));
  const auto before = net->parameters()[0].clone();
  auto next = [] { return std::make_pair(torch::randn({8, 4}), torch::randint(0, 2, {8})); };
  auto loss = [](const torch::Tensor& out, const torch::Tensor& t) {
    return torch::nn::functional::cross_entropy(out, t);
  };
  lrfind::Options o;
  o.num_training = 20;
  o.max_lr = 1;
  o.val_data = {{torch::randn({16, 4}), torch::randint(0, 2, {16})}, {torch::randn({5, 4}), torch::randint(0, 2, {5})}};
  const auto r = lrfind::findLr(net, opt, next, loss, o);
  ASSERT_EQ(r.val_loss.size(), r.lr.size());
  EXPECT_EQ(r.lr.size(), 20u);
  EXPECT_NE(r.val_loss, r.loss_raw);
  // Smoothed from the validation loss: the first point is the first val_loss.
  EXPECT_DOUBLE_EQ(r.loss.front(), r.val_loss.front());
  EXPECT_TRUE(net->is_training());
  EXPECT_TRUE(torch::equal(net->parameters()[0], before));
  o.monitor = "train";
  const auto t = lrfind::findLr(net, opt, next, loss, o);
  EXPECT_DOUBLE_EQ(t.loss.front(), t.loss_raw.front());
  EXPECT_EQ(t.val_loss.size(), t.lr.size());
}

}  // namespace
