#pragma once
// Snapshots a model (parameters, their gradients, buffers, training flag) and an
// optimizer (state and every param group's options, through its own serialization)
// and puts all of it back bit for bit: on restore(), or in the destructor when the
// scope is left by an exception. Snapshots live in host memory for optimizer state and
// on the tensors' own device for the model.

#include <memory>
#include <sstream>
#include <vector>

#include <ATen/core/Tensor.h>

#include "finder/model.h"

namespace torch::optim {
class Optimizer;
}

namespace lrfind::finder {

class StateGuard {
 public:
  StateGuard(Model& model, torch::optim::Optimizer& optimizer);
  ~StateGuard();
  StateGuard(const StateGuard&) = delete;
  StateGuard& operator=(const StateGuard&) = delete;

  // Puts the snapshot back. Idempotent; the destructor then does nothing.
  void restore();
  // Keep the current state; the destructor will not restore.
  void release() { active_ = false; }

 private:
  Model& model_;
  torch::optim::Optimizer& optimizer_;
  std::vector<at::Tensor> params_;
  std::vector<at::Tensor> saved_params_;
  std::vector<at::Tensor> saved_grads_;  // undefined where the parameter had none
  std::vector<at::Tensor> buffers_;
  std::vector<at::Tensor> saved_buffers_;
  std::vector<double> saved_lrs_;
  std::string saved_optimizer_;
  bool was_training_ = true;
  bool active_ = true;
};

}  // namespace lrfind::finder
