#include "runtime/factories.h"

#include <algorithm>

#include <torch/nn/functional/loss.h>
#include <torch/optim.h>

#include "common/error.h"

namespace lrfind::runtime {
namespace {

std::string joined(const std::vector<std::string>& names) {
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
  return s;
}

bool known(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

}  // namespace

const std::vector<std::string>& optimizerNames() {
  static const std::vector<std::string> kNames = {"sgd", "adam", "adamw", "rmsprop", "adagrad"};
  return kNames;
}

const std::vector<std::string>& lossNames() {
  static const std::vector<std::string> kNames = {"cross_entropy", "nll", "mse",
                                                  "l1", "smooth_l1", "bce_with_logits"};
  return kNames;
}

void checkOptimizer(const OptimizerConfig& c) {
  LRFIND_INPUT_CHECK(known(optimizerNames(), c.name), "--optimizer must be one of ",
                     joined(optimizerNames()), "; got \"", c.name, "\"");
  LRFIND_INPUT_CHECK(c.momentum >= 0, "--momentum must be >= 0, got ", c.momentum);
  LRFIND_INPUT_CHECK(!c.weight_decay || *c.weight_decay >= 0, "--weight-decay must be >= 0, got ",
                     c.weight_decay.value_or(0));
  LRFIND_INPUT_CHECK(!c.eps || *c.eps > 0, "--eps must be > 0, got ", c.eps.value_or(0));
  LRFIND_INPUT_CHECK(c.betas[0] >= 0 && c.betas[0] < 1 && c.betas[1] >= 0 && c.betas[1] < 1,
                     "--betas must both be in [0, 1), got ", c.betas[0], ",", c.betas[1]);
  const bool uses_momentum = c.name == "sgd" || c.name == "rmsprop";
  LRFIND_INPUT_CHECK(uses_momentum || c.momentum == 0, "--momentum does not apply to --optimizer ",
                     c.name, " (sgd and rmsprop only)");
  LRFIND_INPUT_CHECK(c.name == "sgd" || !c.nesterov, "--nesterov applies to --optimizer sgd only");
  LRFIND_INPUT_CHECK(!c.nesterov || c.momentum > 0, "--nesterov needs --momentum > 0");
}

void checkLoss(const std::string& name) {
  LRFIND_INPUT_CHECK(known(lossNames(), name), "--loss must be one of ", joined(lossNames()),
                     "; got \"", name, "\"");
}

namespace {

// `Optim` over `groups`, each with a copy of `defaults` carrying its lr and weight decay.
template <typename Optim, typename Options>
std::unique_ptr<torch::optim::Optimizer> build(const std::vector<OptimizerGroup>& groups, const Options& defaults) {
  std::vector<torch::optim::OptimizerParamGroup> param_groups;
  for (const auto& g : groups) {
    auto options = std::make_unique<Options>(defaults);
    options->lr(g.lr);
    if (g.weight_decay) options->weight_decay(*g.weight_decay);
    param_groups.emplace_back(g.params, std::move(options));
  }
  return std::make_unique<Optim>(std::move(param_groups), defaults);
}

}  // namespace

std::unique_ptr<torch::optim::Optimizer> makeOptimizer(const std::vector<at::Tensor>& params,
                                                       const OptimizerConfig& c) {
  return makeOptimizer(std::vector<OptimizerGroup>{{params, c.lr, std::nullopt}}, c);
}

std::unique_ptr<torch::optim::Optimizer> makeOptimizer(const std::vector<OptimizerGroup>& groups,
                                                       const OptimizerConfig& c) {
  using namespace torch::optim;
  checkOptimizer(c);

  if (c.name == "sgd") {
    SGDOptions o(c.lr);
    o.momentum(c.momentum).nesterov(c.nesterov);
    if (c.weight_decay) o.weight_decay(*c.weight_decay);
    return build<SGD>(groups, o);
  }
  if (c.name == "adam" || c.name == "adamw") {
    auto configure = [&](auto o) {
      o.betas(std::make_tuple(c.betas[0], c.betas[1]));
      if (c.eps) o.eps(*c.eps);
      if (c.weight_decay) o.weight_decay(*c.weight_decay);
      return o;
    };
    if (c.name == "adam") return build<Adam>(groups, configure(AdamOptions(c.lr)));
    return build<AdamW>(groups, configure(AdamWOptions(c.lr)));
  }
  if (c.name == "rmsprop") {
    RMSpropOptions o(c.lr);
    o.momentum(c.momentum);
    if (c.eps) o.eps(*c.eps);
    if (c.weight_decay) o.weight_decay(*c.weight_decay);
    return build<RMSprop>(groups, o);
  }
  AdagradOptions o(c.lr);
  if (c.eps) o.eps(*c.eps);
  if (c.weight_decay) o.weight_decay(*c.weight_decay);
  return build<Adagrad>(groups, o);
}

double weightDecay(const OptimizerConfig& c) { return c.weight_decay.value_or(c.name == "adamw" ? 0.01 : 0.0); }

bool lossTakesLabels(const std::string& name) { return name == "cross_entropy" || name == "nll"; }

finder::LossFn makeLoss(const std::string& name) {
  namespace F = torch::nn::functional;
  checkLoss(name);
  if (name == "cross_entropy") {
    return [](const at::Tensor& out, const at::Tensor& y) { return F::cross_entropy(out, y); };
  }
  if (name == "nll") {
    return [](const at::Tensor& out, const at::Tensor& y) { return F::nll_loss(out, y); };
  }
  auto match = [](const at::Tensor& out, const at::Tensor& y) {
    return out.sizes() != y.sizes() && out.numel() == y.numel() ? out.reshape(y.sizes()) : out;
  };
  if (name == "mse") {
    return [match](const at::Tensor& out, const at::Tensor& y) { return F::mse_loss(match(out, y), y); };
  }
  if (name == "l1") {
    return [match](const at::Tensor& out, const at::Tensor& y) { return F::l1_loss(match(out, y), y); };
  }
  if (name == "smooth_l1") {
    return [match](const at::Tensor& out, const at::Tensor& y) {
      return F::smooth_l1_loss(match(out, y), y);
    };
  }
  return [match](const at::Tensor& out, const at::Tensor& y) {
    return F::binary_cross_entropy_with_logits(match(out, y), y);
  };
}

}  // namespace lrfind::runtime
