#include "runtime/models.h"

#include <filesystem>
#include <fstream>

#include <torch/nn.h>
#include <torch/script.h>

#include "common/error.h"
#include "runtime/torch_message.h"

namespace lrfind::runtime {
namespace {

constexpr int64_t kMlpHidden = 128;

std::string shapeOf(const at::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + "]";
}

// Two conv blocks and a linear head; adaptive pooling makes it take any image size.
struct CnnImpl : torch::nn::Module {
  explicit CnnImpl(int64_t channels, int64_t outputs)
      : conv1(torch::nn::Conv2dOptions(channels, 16, 3).padding(1)),
        conv2(torch::nn::Conv2dOptions(16, 32, 3).padding(1)),
        pool(torch::nn::AdaptiveAvgPool2dOptions({4, 4})),
        head(32 * 4 * 4, outputs) {
    register_module("conv1", conv1);
    register_module("conv2", conv2);
    register_module("pool", pool);
    register_module("head", head);
  }
  at::Tensor forward(at::Tensor x) {
    if (x.dim() == 3) x = x.unsqueeze(1);  // [N, H, W] -> [N, 1, H, W]
    x = torch::relu(conv1(x));
    x = torch::relu(conv2(x));
    return head(pool(x).flatten(1));
  }
  torch::nn::Conv2d conv1, conv2;
  torch::nn::AdaptiveAvgPool2d pool;
  torch::nn::Linear head;
};
TORCH_MODULE(Cnn);

class ScriptModel final : public finder::Model {
 public:
  explicit ScriptModel(torch::jit::Module module) : module_(std::move(module)) {}

  at::Tensor forward(const at::Tensor& input) override {
    c10::IValue out = module_.forward({input});
    LRFIND_INPUT_CHECK(out.isTensor(), "the TorchScript model's forward must return one Tensor, got ",
                       out.tagKind());
    return out.toTensor();
  }
  std::vector<at::Tensor> parameters() override {
    std::vector<at::Tensor> out;
    for (const auto& p : module_.parameters()) out.push_back(p);
    return out;
  }
  std::vector<at::Tensor> buffers() override {
    std::vector<at::Tensor> out;
    for (const auto& b : module_.buffers()) out.push_back(b);
    return out;
  }
  bool isTraining() const override { return module_.is_training(); }
  void setTraining(bool on) override { module_.train(on); }

 private:
  torch::jit::Module module_;
};

LoadedModel loadScript(const std::string& path, c10::Device device) {
  namespace fs = std::filesystem;
  std::error_code ec;
  LRFIND_INPUT_CHECK(fs::exists(path, ec), "--model ", path,
                     ": no such file (use mlp, cnn, or a TorchScript file)");
  LRFIND_INPUT_CHECK(std::ifstream(path).good(), "--model ", path, ": cannot be read (check permissions)");
  torch::jit::Module module;
  try {
    module = torch::jit::load(path, device);
  } catch (const c10::Error& e) {
    throw InputError(concat("--model ", path, ": not a TorchScript file (",
                            oneLine(e.what_without_backtrace()),
                            "); save it with torch.jit.script(model).save(path)"));
  } catch (const std::exception& e) {
    throw InputError(concat("--model ", path, ": not a TorchScript file (", oneLine(e.what()),
                            "); save it with torch.jit.script(model).save(path)"));
  }
  LRFIND_INPUT_CHECK(module.find_method("forward").has_value(), "--model ", path,
                     ": the TorchScript module has no forward method");
  auto model = std::make_unique<ScriptModel>(std::move(module));
  LRFIND_INPUT_CHECK(!model->parameters().empty(), "--model ", path,
                     ": the TorchScript module has no parameters to train");
  return {std::move(model), path};
}

}  // namespace

std::unique_ptr<finder::Model> wrapScriptModule(const torch::jit::Module& module) {
  return std::make_unique<ScriptModel>(module);
}

LoadedModel loadModel(const std::string& spec, const Dataset& data, int64_t num_outputs,
                      uint64_t seed, c10::Device device) {
  if (spec != "mlp" && spec != "cnn") {
    const bool looks_like_path = spec.find('/') != std::string::npos || spec.find('.') != std::string::npos;
    LRFIND_INPUT_CHECK(looks_like_path || std::filesystem::exists(spec), "--model \"", spec,
                       "\" is neither a built-in model (mlp, cnn) nor an existing file");
    return loadScript(spec, device);
  }
  torch::manual_seed(seed);
  LoadedModel out;
  out.name = spec;
  if (spec == "mlp") {
    const int64_t in = data.x[0].numel();
    torch::nn::Sequential mlp(torch::nn::Flatten(), torch::nn::Linear(in, kMlpHidden),
                              torch::nn::ReLU(), torch::nn::Linear(kMlpHidden, kMlpHidden),
                              torch::nn::ReLU(), torch::nn::Linear(kMlpHidden, num_outputs));
    mlp->to(device);
    out.model = finder::makeModel(mlp);
  } else {
    const int64_t dim = data.x.dim();
    LRFIND_INPUT_CHECK(dim == 3 || dim == 4, "--model cnn needs image inputs [samples, H, W] or "
                       "[samples, C, H, W]; --data ", data.source, " has ", shapeOf(data.x),
                       " (use --model mlp)");
    const int64_t channels = dim == 4 ? data.x.size(1) : 1;
    Cnn cnn(channels, num_outputs);
    cnn->to(device);
    out.model = finder::makeModel(cnn);
  }
  return out;
}

at::Tensor dryForward(finder::Model& model, const std::string& name, const Dataset& data,
                      c10::Device device) {
  at::NoGradGuard no_grad;
  const bool was_training = model.isTraining();
  model.setTraining(false);
  at::Tensor sample = data.x.narrow(0, 0, std::min<int64_t>(2, data.size())).to(device);
  at::Tensor out;
  try {
    out = model.forward(sample);
  } catch (const std::exception& e) {
    // c10::Error from LibTorch, JITException from the TorchScript interpreter.
    model.setTraining(was_training);
    const auto* c10_error = dynamic_cast<const c10::Error*>(&e);
    throw InputError(concat("--model ", name, " rejects inputs of shape ", shapeOf(sample), " (from --data ",
                            data.source, "): ",
                            oneLine(c10_error != nullptr ? c10_error->what_without_backtrace() : e.what())));
  }
  model.setTraining(was_training);
  LRFIND_INPUT_CHECK(out.dim() >= 1 && out.size(0) == sample.size(0), "--model ", name,
                     " returned shape ", shapeOf(out), " for a batch of ", sample.size(0),
                     "; the first dimension must be the batch");
  return out;
}

}  // namespace lrfind::runtime
