#pragma once
// Optimizers and losses by name, for the CLI.

#include <array>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "finder/model.h"

namespace torch::optim {
class Optimizer;
}

namespace lrfind::runtime {

struct OptimizerConfig {
  std::string name = "sgd";  // sgd, adam, adamw, rmsprop, adagrad
  double lr = 1e-8;
  double momentum = 0.0;     // sgd, rmsprop
  bool nesterov = false;     // sgd
  std::optional<double> weight_decay;  // unset: the optimizer's own default
  std::array<double, 2> betas{0.9, 0.999};  // adam, adamw
  std::optional<double> eps;            // unset: the optimizer's own default
};

const std::vector<std::string>& optimizerNames();
const std::vector<std::string>& lossNames();

// The checks makeOptimizer() and makeLoss() do first, without LibTorch work: InputError
// for an unknown name or an invalid combination, naming the flag. run() does them before
// anything is loaded (for a grid, for every sweep).
void checkOptimizer(const OptimizerConfig& config);
void checkLoss(const std::string& name);

// Throws InputError for unknown names and invalid combinations, naming the flag.
std::unique_ptr<torch::optim::Optimizer> makeOptimizer(const std::vector<at::Tensor>& params,
                                                       const OptimizerConfig& config);

// One param group of makeOptimizer(): its parameters, its lr and, when set, its own
// weight decay (else the optimizer's).
struct OptimizerGroup {
  std::vector<at::Tensor> params;
  double lr = 1e-8;
  std::optional<double> weight_decay;
};
// The optimizer with these param groups, in this order; `config.lr` is unused.
std::unique_ptr<torch::optim::Optimizer> makeOptimizer(const std::vector<OptimizerGroup>& groups,
                                                       const OptimizerConfig& config);

// The weight decay `config` gives: --weight-decay, or the optimizer's own default
// (adamw 0.01, the others 0).
double weightDecay(const OptimizerConfig& config);

// Whether the loss takes integer class labels (cross_entropy, nll) or float targets.
bool lossTakesLabels(const std::string& name);

// Output and target are matched before the loss: for float targets an output with the
// same number of elements is reshaped to the target's shape ([N,1] vs [N]).
finder::LossFn makeLoss(const std::string& name);

}  // namespace lrfind::runtime
