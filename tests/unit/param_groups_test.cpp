// Parameter groups (runtime/param_groups.h): parsing --param-group, the first match
// winning, and exactly which parameters --no-decay-bias-norm exempts from weight decay.

#include "runtime/param_groups.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/nn.h>

#include "common/error.h"
#include "finder/model.h"

namespace lrfind::runtime {
namespace {

// Linear, BatchNorm1d, ReLU, Linear, LayerNorm: names "0.weight", "1.bias", ...
std::unique_ptr<finder::Model> mixedModel() {
  torch::manual_seed(0);
  torch::nn::Sequential net(torch::nn::Linear(8, 16), torch::nn::BatchNorm1d(16), torch::nn::ReLU(),
                            torch::nn::Linear(16, 4), torch::nn::LayerNorm(torch::nn::LayerNormOptions({4})));
  return finder::makeModel(net);
}

std::string thrown(const std::function<void()>& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "no error";
}

TEST(ParamGroups, NamedParametersNameEveryParameterWithItsModuleType) {
  const auto model = mixedModel();
  const auto named = model->namedParameters();
  std::vector<std::string> names, types;
  for (const auto& p : named) {
    names.push_back(p.name);
    types.push_back(p.module_type);
  }
  EXPECT_EQ(names, (std::vector<std::string>{"0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias",
                                             "4.weight", "4.bias"}));
  EXPECT_EQ(types, (std::vector<std::string>{"Linear", "Linear", "BatchNorm1d", "BatchNorm1d", "Linear", "Linear",
                                             "LayerNorm", "LayerNorm"}));
  ASSERT_EQ(named.size(), model->parameters().size());
  for (std::size_t i = 0; i < named.size(); ++i) EXPECT_TRUE(named[i].tensor.is_same(model->parameters()[i]));
}

// The exact parameters that lose their weight decay: every bias, the norms' weights.
TEST(ParamGroups, NoDecayBiasNormTakesBiasesOneDimensionalAndNormParameters) {
  const auto model = mixedModel();
  const auto groups = planParamGroups(model->namedParameters(), {}, /*no_decay_bias_norm=*/true, 0.05);
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups[0].info.names, (std::vector<std::string>{"0.weight", "3.weight"}));
  EXPECT_EQ(groups[0].info.weight_decay, 0.05);
  EXPECT_EQ(groups[1].info.names,
            (std::vector<std::string>{"0.bias", "1.weight", "1.bias", "3.bias", "4.weight", "4.bias"}));
  EXPECT_EQ(groups[1].info.weight_decay, 0.0);
  EXPECT_EQ(groups[1].info.multiplier, 1.0);
  EXPECT_EQ(groups[0].info.numel, 8 * 16 + 16 * 4);
  // A 2-D weight of a norm module is exempt too; a 2-D weight elsewhere is not.
  const at::Tensor w = at::zeros({3, 3});
  EXPECT_TRUE(noDecay({"block.norm.weight", w, "GroupNorm"}));
  EXPECT_FALSE(noDecay({"block.proj.weight", w, "Linear"}));
  EXPECT_TRUE(noDecay({"bias", w, "Net"}));
  EXPECT_TRUE(noDecay({"scale", at::zeros({3}), "Net"}));
}

TEST(ParamGroups, FirstMatchingPatternWinsAndEachKeepsItsNoDecayTwin) {
  const auto model = mixedModel();
  const std::vector<ParamGroupSpec> specs = {parseParamGroup("^3\\.=10"), parseParamGroup("^[34]\\.=0.5")};
  const auto groups = planParamGroups(model->namedParameters(), specs, true, 0.01);
  ASSERT_EQ(groups.size(), 5u);
  EXPECT_EQ(groups[0].info.names, (std::vector<std::string>{"0.weight"}));
  EXPECT_EQ(groups[1].info.names, (std::vector<std::string>{"0.bias", "1.weight", "1.bias"}));
  EXPECT_EQ(groups[2].info.names, (std::vector<std::string>{"3.weight"}));  // ^3\. first
  EXPECT_EQ(groups[2].info.multiplier, 10.0);
  EXPECT_EQ(groups[2].info.weight_decay, 0.01);
  EXPECT_EQ(groups[3].info.names, (std::vector<std::string>{"3.bias"}));
  EXPECT_EQ(groups[3].info.weight_decay, 0.0);
  EXPECT_EQ(groups[4].info.names, (std::vector<std::string>{"4.weight", "4.bias"}));  // 3.* taken already
  EXPECT_EQ(groups[4].info.pattern, "^[34]\\.");
  EXPECT_EQ(groups[4].info.multiplier, 0.5);
  // Without --no-decay-bias-norm: one group per pattern plus the default.
  const auto plain = planParamGroups(model->namedParameters(), {parseParamGroup("^3\\.=10")}, false, 0.01);
  ASSERT_EQ(plain.size(), 2u);
  EXPECT_EQ(plain[1].info.names, (std::vector<std::string>{"3.weight", "3.bias"}));
}

TEST(ParamGroups, BadPatternsAndMultipliersAreOneLineErrors) {
  EXPECT_NE(thrown([] { parseParamGroup("fc"); }).find("--param-group must be REGEX=MULT"), std::string::npos);
  EXPECT_NE(thrown([] { parseParamGroup("=2"); }).find("--param-group must be REGEX=MULT"), std::string::npos);
  EXPECT_NE(thrown([] { parseParamGroup("fc=0"); }).find("the multiplier must be a positive number, got \"0\""),
            std::string::npos);
  EXPECT_NE(thrown([] { parseParamGroup("fc=-1"); }).find("must be a positive number"), std::string::npos);
  EXPECT_NE(thrown([] { parseParamGroup("fc=x"); }).find("must be a positive number"), std::string::npos);
  EXPECT_NE(thrown([] { parseParamGroup("fc=inf"); }).find("must be a positive number"), std::string::npos);
  EXPECT_NE(thrown([] { parseParamGroup("([=2"); }).find("'([' is not a valid regular expression"),
            std::string::npos);
  EXPECT_EQ(parseParamGroup("a=b=3").pattern, "a=b") << "split at the last '='";
  const auto model = mixedModel();
  const std::string none = thrown([&] { planParamGroups(model->namedParameters(), {parseParamGroup("^fc2=2")}, false, 0); });
  EXPECT_NE(none.find("--param-group ^fc2=2: the pattern matches no parameter of the model"), std::string::npos)
      << none;
  EXPECT_NE(none.find("its parameters: 0.weight, 0.bias, 1.weight, 1.bias, 3.weight, 3.bias, ... (8 in all)"),
            std::string::npos)
      << none;
}

}  // namespace
}  // namespace lrfind::runtime
