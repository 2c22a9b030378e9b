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
}

}  // namespace
