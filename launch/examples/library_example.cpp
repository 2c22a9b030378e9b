// The library API on your own torch::nn module, optimizer and data (the README's
// example). Built twice by the tests: in the tree (ctest library_example), and as a
// user's project against the installed package (tests/consumer, find_package(lrfind)).
// Exits 0 when a suggestion came back and the model and optimizer are unchanged.

#include <lrfind/lrfind.h>

#include <cstdio>

#include <torch/torch.h>

struct NetImpl : torch::nn::Module {
  NetImpl() : fc1(register_module("fc1", torch::nn::Linear(20, 64))), fc2(register_module("fc2", torch::nn::Linear(64, 2))) {}
  torch::Tensor forward(const torch::Tensor& x) { return fc2(torch::relu(fc1(x))); }
  torch::nn::Linear fc1, fc2;
};
TORCH_MODULE(Net);

int main() {
  torch::manual_seed(0);
  const auto x = torch::randn({1024, 20});
  const auto y = (x.select(1, 0) > 0).to(torch::kLong);
  Net net;
  torch::optim::SGD optimizer(net->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
  const auto before = net->fc1->weight.clone();

  int64_t position = 0;
  auto next_batch = [&] {
    const int64_t start = (position++ * 32) % (1024 - 32);
    return std::make_pair(x.narrow(0, start, 32), y.narrow(0, start, 32));
  };
  auto loss = [](const torch::Tensor& out, const torch::Tensor& target) {
    return torch::nn::functional::cross_entropy(out, target);
  };
  lrfind::Options options;
  options.min_lr = 1e-5;
  options.max_lr = 10;
  const auto result = lrfind::findLr(net, optimizer, next_batch, loss, options);

  std::printf("lrfind %s: %zu steps, %s, suggested lr %g\n", lrfind::version(), result.lr.size(),
              result.stop_reason.c_str(), result.suggested_lr.value_or(-1));
  for (const auto& [method, lr] : result.suggestions) std::printf("  %s: %g\n", method.c_str(), lr.value_or(-1));
  const bool unchanged = torch::equal(before, net->fc1->weight);
  const bool lr_back = optimizer.param_groups()[0].options().get_lr() == 0.01;
  if (!unchanged || !lr_back) std::printf("the model or the optimizer changed\n");
  return result.suggested_lr && unchanged && lr_back ? 0 : 1;
}
