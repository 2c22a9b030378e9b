// The sweep on a CUDA device. Skips, with the reason, where LibTorch has no CUDA or no
// GPU is visible (CI); launch/gpu_check.sh runs it on a GPU machine.

#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/optim/optimizer.h>

#include "finder/sweep.h"
#include "runtime/batches.h"
#include "runtime/dataset.h"
#include "runtime/factories.h"
#include "runtime/models.h"

namespace lrfind {
namespace {

#define LRFIND_SKIP_WITHOUT_GPU()                                                                  \
  if (!torch::cuda::is_available()) {                                                              \
    GTEST_SKIP() << "no usable CUDA GPU (LibTorch without CUDA, or none visible to this process)"; \
  }

finder::SweepResult sweepOn(c10::Device device, const std::string& model_name, int64_t steps) {
  const runtime::Dataset data = runtime::makeSynthetic(0);
  auto loaded = runtime::loadModel(model_name, data, 10, /*seed=*/0, device);
  runtime::OptimizerConfig opt;
  opt.momentum = 0.9;
  auto optimizer = runtime::makeOptimizer(loaded.model->parameters(), opt);
  runtime::BatchPlan plan;
  plan.batch_size = 64;
  runtime::ShardedBatches batches(data, plan, device);
  finder::SweepOptions options;
  options.num_training = steps;
  options.min_lr = 1e-4;
  options.max_lr = 1.0;
  options.early_stop_threshold.reset();
  return finder::runSweep(*loaded.model, *optimizer, batches, runtime::makeLoss("cross_entropy"), options);
}

// The bar: the first 50 steps' loss_raw within 1e-3 relative of the CPU sweep.
TEST(GpuSweep, CudaMatchesCpuOverFiftySteps) {
  LRFIND_SKIP_WITHOUT_GPU();
  const auto cpu = sweepOn(c10::Device(c10::DeviceType::CPU), "mlp", 50);
  const auto gpu = sweepOn(c10::Device(c10::DeviceType::CUDA, 0), "mlp", 50);
  ASSERT_EQ(cpu.loss_raw.size(), 50u);
  ASSERT_EQ(gpu.loss_raw.size(), 50u);
  for (std::size_t k = 0; k < 50; ++k) {
    EXPECT_EQ(cpu.lr[k], gpu.lr[k]) << "step " << k;
    EXPECT_NEAR(gpu.loss_raw[k], cpu.loss_raw[k], 1e-3 * std::abs(cpu.loss_raw[k])) << "step " << k;
  }
}

TEST(GpuSweep, BatchesArriveOnTheDevice) {
  LRFIND_SKIP_WITHOUT_GPU();
  const runtime::Dataset data = runtime::makeSynthetic(0);
  runtime::BatchPlan plan;
  plan.batch_size = 8;
  runtime::ShardedBatches on_gpu(data, plan, c10::Device(c10::DeviceType::CUDA, 0));
  runtime::ShardedBatches on_cpu(data, plan, c10::Device(c10::DeviceType::CPU));
  const auto g = on_gpu.next();
  const auto c = on_cpu.next();
  EXPECT_TRUE(g.input.is_cuda());
  EXPECT_TRUE(g.target.is_cuda());
  EXPECT_TRUE(at::equal(g.input.cpu(), c.input));
  EXPECT_TRUE(at::equal(g.target.cpu(), c.target));
}

// The model is left as it was, on the GPU too.
TEST(GpuSweep, RestoresTheModelOnTheDevice) {
  LRFIND_SKIP_WITHOUT_GPU();
  const c10::Device device(c10::DeviceType::CUDA, 0);
  const runtime::Dataset data = runtime::makeSynthetic(0);
  auto loaded = runtime::loadModel("mlp", data, 10, 0, device);
  std::vector<at::Tensor> before;
  for (auto& p : loaded.model->parameters()) before.push_back(p.detach().clone());
  auto optimizer = runtime::makeOptimizer(loaded.model->parameters(), runtime::OptimizerConfig{});
  runtime::BatchPlan plan;
  runtime::ShardedBatches batches(data, plan, device);
  finder::SweepOptions options;
  options.num_training = 10;
  finder::runSweep(*loaded.model, *optimizer, batches, runtime::makeLoss("cross_entropy"), options);
  const auto after = loaded.model->parameters();
  for (std::size_t i = 0; i < before.size(); ++i) {
    EXPECT_TRUE(after[i].is_cuda());
    EXPECT_TRUE(at::equal(after[i], before[i])) << "parameter " << i;
  }
}

}  // namespace
}  // namespace lrfind
