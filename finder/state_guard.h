#pragma once
// Snapshots a model (parameters, their gradients, buffers, training flag) and an
// optimizer (per-parameter state and every param group's options) and puts all of it
// back bit for bit: on restore(), or in the destructor when the scope is left by an
// exception. Snapshots stay on the tensors' own devices.
//
// Optimizer state of LibTorch's SGD, Adam, AdamW, RMSprop and Adagrad is deep-copied
// tensor by tensor (cheap: one clone per state tensor); any other optimizer goes
// through its own save()/load() serialization in memory, which knows every state type
// but costs a serialization round trip.

#include <memory>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include <ATen/core/Tensor.h>

#include "finder/model.h"

namespace torch::optim {
class Optimizer;
class OptimizerParamState;
class OptimizerOptions;
}

namespace lrfind::finder {

// The key of `param`'s entry in Optimizer::state(), whatever LibTorch's key type:
// std::string (the TensorImpl address printed) in 1.x, the TensorImpl address in 2.x.
// For code that reads or writes optimizer state by parameter.
template <typename StateMap>
typename StateMap::key_type optimizerStateKey(const StateMap&, const at::Tensor& param) {
  using Key = typename StateMap::key_type;
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream os;
    os << static_cast<const void*>(param.unsafeGetTensorImpl());
    return os.str();
  } else {
    return static_cast<Key>(param.unsafeGetTensorImpl());
  }
}

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
  std::vector<std::unique_ptr<torch::optim::OptimizerOptions>> saved_options_;
  // Deep copies of optimizer.state() (its key type differs between LibTorch 1.x and
  // 2.x, hence the pimpl), or, when a state type is unknown, the optimizer serialized
  // (saved_by_archive_).
  struct SavedState;
  std::unique_ptr<SavedState> saved_state_;
  bool saved_by_archive_ = false;
  std::string saved_archive_;
  bool was_training_ = true;
  bool active_ = true;
};

}  // namespace lrfind::finder
