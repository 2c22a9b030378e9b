#pragma once
// What the sweep trains: a model, a stream of batches and a loss. Small interfaces so
// that a torch::nn::Module, a TorchScript module or anything else can be swept.

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

namespace lrfind::finder {

// A parameter as the model names it, and the type of the module that holds it.
struct NamedParameter {
  std::string name;         // "features.0.weight", as named_parameters() says it
  at::Tensor tensor;
  std::string module_type;  // "BatchNorm2d", "Linear", "Net" (the module's own type name)
};

class Model {
 public:
  virtual ~Model() = default;
  virtual at::Tensor forward(const at::Tensor& input) = 0;
  // The trainable parameters, in a fixed order (the same on every rank).
  virtual std::vector<at::Tensor> parameters() = 0;
  // Every parameter with its name and module; empty when the model cannot name them.
  virtual std::vector<NamedParameter> namedParameters() { return {}; }
  // Non-trainable state that forward may change (e.g. batch-norm statistics).
  virtual std::vector<at::Tensor> buffers() = 0;
  virtual bool isTraining() const = 0;
  virtual void setTraining(bool on) = 0;
};

// A torch::nn::Module plus how to call it: makeModel(my_module_holder) uses its forward.
class NnModel final : public Model {
 public:
  using Forward = std::function<at::Tensor(const at::Tensor&)>;
  NnModel(std::shared_ptr<torch::nn::Module> module, Forward forward)
      : module_(std::move(module)), forward_(std::move(forward)) {}

  at::Tensor forward(const at::Tensor& input) override { return forward_(input); }
  std::vector<at::Tensor> parameters() override { return module_->parameters(); }
  std::vector<NamedParameter> namedParameters() override {
    std::vector<NamedParameter> out;
    for (const auto& item : module_->named_modules()) {
      // "torch::nn::BatchNorm2dImpl" -> "BatchNorm2d"
      std::string type = item.value()->name();
      if (const auto colon = type.rfind("::"); colon != std::string::npos) type = type.substr(colon + 2);
      if (type.size() > 4 && type.compare(type.size() - 4, 4, "Impl") == 0) type.resize(type.size() - 4);
      for (const auto& p : item.value()->named_parameters(/*recurse=*/false)) {
        out.push_back({item.key().empty() ? p.key() : item.key() + "." + p.key(), p.value(), type});
      }
    }
    return out;
  }
  std::vector<at::Tensor> buffers() override { return module_->buffers(); }
  bool isTraining() const override { return module_->is_training(); }
  void setTraining(bool on) override { module_->train(on); }

 private:
  std::shared_ptr<torch::nn::Module> module_;
  Forward forward_;
};

// For a torch::nn::ModuleHolder (e.g. torch::nn::Sequential, or a TORCH_MODULE type).
template <typename Holder>
std::unique_ptr<Model> makeModel(Holder holder) {
  auto forward = [holder](const at::Tensor& x) mutable { return holder->forward(x); };
  return std::make_unique<NnModel>(holder.ptr(), std::move(forward));
}

struct Batch {
  at::Tensor input;
  at::Tensor target;
};

// This rank's stream of micro-batches. next() never runs out (it cycles); each call
// returns the next micro-batch, already on the model's device. May throw; the sweep
// reports the error to all ranks.
class BatchSource {
 public:
  virtual ~BatchSource() = default;
  virtual Batch next() = 0;
};

// This rank's share of held-out data (validation mode): the same batches at every
// evaluation, each on the model's device. batch() may throw; the sweep reports the
// error to all ranks.
class EvalSource {
 public:
  virtual ~EvalSource() = default;
  virtual int64_t numBatches() const = 0;
  virtual Batch batch(int64_t index) = 0;
};

// Mean loss over the batch, a scalar tensor (reduction "mean").
using LossFn = std::function<at::Tensor(const at::Tensor& output, const at::Tensor& target)>;

}  // namespace lrfind::finder
