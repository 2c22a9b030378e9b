#include "runtime/models.h"

#include <algorithm>
#include <cctype>
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

// TorchScript's name for a value's type: Tensor, Tuple[Tensor, Tensor], Dict[str, Tensor].
std::string typeOf(const c10::IValue& v) { return v.type()->annotation_str(); }

bool allDigits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char ch) { return std::isdigit(ch); });
}

// The logits in what forward returned: the Tensor itself, or with `output` (--output)
// the element of a tuple or list at an index, or the value of a Dict[str, ...] at a
// key. `name` is the model's --model. Throws InputError naming --output.
at::Tensor pickOutput(const c10::IValue& out, const std::string& name, const std::string& output) {
  if (out.isTensor()) {
    LRFIND_INPUT_CHECK(output.empty(), "--model ", name, ": forward returns one Tensor; --output ", output,
                       " applies only to a forward that returns a tuple, list or dict (drop --output)");
    return out.toTensor();
  }
  c10::IValue picked;
  if (out.isTuple() || out.isList()) {
    const char* kind = out.isTuple() ? "tuple" : "list";
    const auto& items = out.isTuple() ? out.toTupleRef().elements() : out.toListRef();
    const auto n = static_cast<int64_t>(items.size());
    LRFIND_INPUT_CHECK(n > 0, "--model ", name, ": forward returns an empty ", kind, "; it must return the logits");
    // Built only for a message: forward runs every step.
    const auto range = [n] { return concat("--output N (0..", n - 1, ")"); };
    LRFIND_INPUT_CHECK(!output.empty(), "--model ", name, ": forward returns a ", kind, " of ", n,
                       " elements; pick the logits with ", range());
    LRFIND_INPUT_CHECK(allDigits(output), "--model ", name, ": --output ", output,
                       " is a dict key, but forward returns a ", kind, " of ", n,
                       " elements; pick the logits with ", range());
    const int64_t i = output.size() > 9 ? n : std::stoll(output);  // more digits than any tuple has
    LRFIND_INPUT_CHECK(i < n, "--model ", name, ": --output ", output, " is out of range: forward returns a ", kind,
                       " of ", n, " elements; pick the logits with ", range());
    picked = items[static_cast<std::size_t>(i)];
  } else if (out.isGenericDict()) {
    const auto dict = out.toGenericDict();
    LRFIND_INPUT_CHECK(dict.keyType()->kind() == c10::TypeKind::StringType, "--model ", name, ": forward returns ",
                       typeOf(out), "; --output NAME picks from a dict with str keys (Dict[str, Tensor])");
    LRFIND_INPUT_CHECK(!dict.empty(), "--model ", name, ": forward returns an empty dict; it must return the logits");
    const auto keys = [&dict] {
      std::string text;
      for (const auto& entry : dict) text += (text.empty() ? "" : ", ") + entry.key().toStringRef();
      return text;
    };
    LRFIND_INPUT_CHECK(!output.empty(), "--model ", name, ": forward returns a dict with keys ", keys(),
                       "; pick the logits with --output NAME");
    const auto it = dict.find(output);
    LRFIND_INPUT_CHECK(it != dict.end(), "--model ", name, ": --output ", output,
                       " is not a key of the dict forward returns (its keys: ", keys(), ")");
    picked = it->value();
  } else {
    throw InputError(concat("--model ", name, ": forward returns ", typeOf(out), "; it must return the logits as a "
                            "Tensor, or a tuple, list or dict holding them (pick them with --output)"));
  }
  LRFIND_INPUT_CHECK(picked.isTensor(), "--model ", name, ": --output ", output, " picks ", typeOf(picked),
                     " from forward's ", typeOf(out), "; it must pick the logits, a Tensor");
  return picked.toTensor();
}

class ScriptModel final : public finder::Model {
 public:
  ScriptModel(torch::jit::Module module, std::string name, std::string output)
      : module_(std::move(module)), name_(std::move(name)), output_(std::move(output)) {}

  at::Tensor forward(const at::Tensor& input) override {
    return pickOutput(module_.forward({input}), name_, output_);
  }
  std::vector<at::Tensor> parameters() override {
    std::vector<at::Tensor> out;
    for (const auto& p : module_.parameters()) out.push_back(p);
    return out;
  }
  std::vector<finder::NamedParameter> namedParameters() override {
    std::vector<finder::NamedParameter> out;
    for (const auto& sub : module_.named_modules()) {
      const auto type = sub.value.type()->name();
      const std::string type_name = type ? type->name() : std::string("Module");
      for (const auto& p : sub.value.named_parameters(/*recurse=*/false)) {
        out.push_back({sub.name.empty() ? p.name : sub.name + "." + p.name, p.value, type_name});
      }
    }
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
  std::string name_;    // --model, for messages
  std::string output_;  // --output; empty: forward returns one Tensor
};

LoadedModel loadScript(const std::string& path, const std::string& output, c10::Device device) {
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
  auto model = std::make_unique<ScriptModel>(std::move(module), path, output);
  LRFIND_INPUT_CHECK(!model->parameters().empty(), "--model ", path,
                     ": the TorchScript module has no parameters to train");
  return {std::move(model), path};
}

}  // namespace

std::unique_ptr<finder::Model> wrapScriptModule(const torch::jit::Module& module) {
  return std::make_unique<ScriptModel>(module, "the TorchScript module", "");
}

LoadedModel loadModel(const std::string& spec, const Dataset& data, int64_t num_outputs,
                      uint64_t seed, c10::Device device, const std::string& output) {
  if (spec != "mlp" && spec != "cnn") {
    const bool looks_like_path = spec.find('/') != std::string::npos || spec.find('.') != std::string::npos;
    LRFIND_INPUT_CHECK(looks_like_path || std::filesystem::exists(spec), "--model \"", spec,
                       "\" is neither a built-in model (mlp, cnn) nor an existing file");
    return loadScript(spec, output, device);
  }
  LRFIND_INPUT_CHECK(output.empty(), "--output ", output, " picks the logits from a TorchScript model's tuple, list "
                     "or dict; the built-in --model ", spec, " returns one Tensor (drop --output)");
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
  } catch (const InputError&) {
    // What forward returned is not what lrfind takes (--output): not the inputs' fault.
    model.setTraining(was_training);
    throw;
  } catch (const std::exception& e) {
    // c10::Error from LibTorch, JITException from the TorchScript interpreter.
    model.setTraining(was_training);
    const auto* c10_error = dynamic_cast<const c10::Error*>(&e);
    // A conv model given [N, H, W, C] images fails inside LibTorch's conv; say so.
    const bool looks_nhwc = !data.transform.channels_last && sample.dim() == 4 &&
                            (sample.size(-1) == 1 || sample.size(-1) == 3) && sample.size(1) != 1 &&
                            sample.size(1) != 3;
    throw InputError(concat("--model ", name, " rejects inputs of shape ", shapeOf(sample), " (from --data ",
                            data.source, "): ",
                            oneLine(c10_error != nullptr ? c10_error->what_without_backtrace() : e.what()),
                            looks_nhwc ? "; the inputs look channels-last [N, H, W, C]: try --channels-last" : ""));
  }
  model.setTraining(was_training);
  LRFIND_INPUT_CHECK(out.dim() >= 1 && out.size(0) == sample.size(0), "--model ", name,
                     " returned shape ", shapeOf(out), " for a batch of ", sample.size(0),
                     "; the first dimension must be the batch");
  return out;
}

}  // namespace lrfind::runtime
