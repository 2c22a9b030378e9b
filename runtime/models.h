#pragma once
// Models the CLI can sweep: built-in `mlp` and `cnn`, sized from the data, or a
// TorchScript file saved from Python (torch.jit.script(model).save("model.pt")).

#include <cstdint>
#include <memory>
#include <string>

#include <c10/core/Device.h>

#include "finder/model.h"
#include "runtime/dataset.h"

namespace torch::jit {
struct Module;
}

namespace lrfind::runtime {

struct LoadedModel {
  std::unique_ptr<finder::Model> model;
  std::string name;  // "mlp", "cnn" or the file path
};

// `spec` is "mlp", "cnn" or a path to a TorchScript file. Built-in models take their
// input width from data.x and their output width from `num_outputs`; their initial
// weights come from `seed`. `output` (--output) says where a TorchScript forward's
// logits are when it returns more than one value: the index into a tuple or list (all
// digits), or the key of a Dict[str, ...]; empty: forward returns them as one Tensor. The
// model's forward throws InputError, naming --output, when what the TorchScript forward
// returns does not fit `output`. Throws InputError for unknown names, missing files,
// non-TorchScript files, data shapes a built-in model cannot take, and an `output` for a
// built-in model.
LoadedModel loadModel(const std::string& spec, const Dataset& data, int64_t num_outputs,
                      uint64_t seed, c10::Device device, const std::string& output = "");

// Wraps a TorchScript module; forward must take one Tensor and return one Tensor.
std::unique_ptr<finder::Model> wrapScriptModule(const torch::jit::Module& module);

// Runs one forward pass on the first two samples without gradients and returns the
// output; throws InputError naming the model and the input shape when it fails (and
// suggesting --channels-last when the inputs look [N, H, W, C]). The model's own
// InputError (what forward returned does not fit --output) passes through as it is.
at::Tensor dryForward(finder::Model& model, const std::string& name, const Dataset& data,
                      c10::Device device);

}  // namespace lrfind::runtime
