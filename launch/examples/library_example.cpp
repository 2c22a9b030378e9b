// The library API on your own torch::nn module, optimizer and data: the README's
// example, built and run by ctest so that it keeps compiling.

#include <cstdio>

#include <torch/torch.h>

#include "finder/sweep.h"

namespace {

// Any BatchSource works; this one cycles over in-memory tensors.
class TensorBatches : public lrfind::finder::BatchSource {
 public:
  TensorBatches(torch::Tensor x, torch::Tensor y, int64_t batch) : x_(x), y_(y), batch_(batch) {}
  lrfind::finder::Batch next() override {
    const int64_t start = (pos_ * batch_) % (x_.size(0) - batch_ + 1);
    ++pos_;
    return {x_.narrow(0, start, batch_), y_.narrow(0, start, batch_)};
  }

 private:
  torch::Tensor x_, y_;
  int64_t batch_, pos_ = 0;
};

}  // namespace

int main() {
  torch::manual_seed(0);
  auto x = torch::randn({1024, 20});
  auto y = (x.narrow(1, 0, 1).squeeze(1) > 0).to(torch::kLong);  // a learnable rule

  torch::nn::Sequential net(torch::nn::Linear(20, 64), torch::nn::ReLU(), torch::nn::Linear(64, 2));
  torch::optim::AdamW optimizer(net->parameters(), torch::optim::AdamWOptions(1e-3));
  TensorBatches data(x, y, 32);

  auto model = lrfind::finder::makeModel(net);
  lrfind::finder::SweepOptions options;  // Lightning's defaults: 1e-8 .. 1, 100 steps
  options.min_lr = 1e-6;
  options.max_lr = 10;
  auto loss = [](const torch::Tensor& out, const torch::Tensor& target) {
    return torch::nn::functional::cross_entropy(out, target);
  };
  const auto result = lrfind::finder::runSweep(*model, optimizer, data, loss, options);

  const auto& s = result.suggestion();
  std::printf("%lld steps, %s; suggested lr %s\n", static_cast<long long>(result.stepsCompleted()),
              lrfind::finder::toString(result.stop_reason), s.found ? std::to_string(s.lr).c_str() : "none");
  // net and optimizer are exactly as they were before the sweep.
  return s.found ? 0 : 1;
}
