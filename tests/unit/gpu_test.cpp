// The sweep on a CUDA device. Skips, with the reason, where LibTorch has no CUDA or no
// GPU is visible (CI); launch/gpu_check.sh runs it on a GPU machine.

#include <algorithm>
#include <cmath>

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

// The CPU/CUDA comparison: the MLP on synthetic data, batch 64, SGD with momentum 0.9,
// 50 steps from 1e-4 to kMaxLr.
//
// Why this bound. CUDA and CPU sum float32 products in different orders (cuBLAS vs
// OpenBLAS tiles), so each step's parameters differ by a few ulps, and momentum SGD
// carries those differences forward. On the CPU, 1 against 2 threads gave
// curves within 1.3e-7 relative over the compared steps; 1e-3 leaves a wide margin
// for the GPU's different kernels. Two regions carry no
// signal and are left out: near zero loss (this data is learnable: at max_lr 1 the loss
// reached 3e-5 and exactly 0.0 at steps 46, 48 and 49, where a relative tolerance is
// none at all), and the chaotic high-lr end, where a few ulps grow without bound. So
// max_lr is 0.1, a step is compared only while the CPU loss is above kFloor (a tenth
// of ln 10, the loss of a uniform guess over 10 classes), and the tolerance has an
// absolute floor of kAbsTol for the small-loss steps just above kFloor.
constexpr double kMaxLr = 0.1;
constexpr double kFloor = 0.23;
constexpr double kRelTol = 1e-3;
constexpr double kAbsTol = 1e-4;
constexpr std::size_t kSteps = 50;
constexpr std::size_t kMinCompared = 35;  // the window must not shrink to nothing

finder::SweepResult sweepOn(c10::Device device, const std::string& model_name, int64_t steps,
                            double max_lr = kMaxLr) {
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
  options.max_lr = max_lr;
  options.early_stop_threshold.reset();
  return finder::runSweep(*loaded.model, *optimizer, batches, runtime::makeLoss("cross_entropy"), options);
}

// The steps compared: the leading ones whose CPU loss is above kFloor.
std::size_t comparedSteps(const finder::SweepResult& cpu) {
  std::size_t n = 0;
  while (n < cpu.loss_raw.size() && cpu.loss_raw[n] > kFloor) ++n;
  return n;
}

// Runs everywhere (CPU only): the comparison above has a long window, all of it above
// the floor. The old setup (max_lr 1, every step compared) fails it: its loss reaches
// exactly zero inside the window.
TEST(GpuSweep, ComparisonWindowIsLongAndAboveTheFloor) {
  const auto cpu = sweepOn(c10::Device(c10::DeviceType::CPU), "mlp", kSteps);
  ASSERT_EQ(cpu.loss_raw.size(), kSteps);
  EXPECT_GE(comparedSteps(cpu), kMinCompared);
  const auto old_setup = sweepOn(c10::Device(c10::DeviceType::CPU), "mlp", kSteps, /*max_lr=*/1.0);
  EXPECT_LT(comparedSteps(old_setup), kSteps) << "the old setup's loss stayed above the floor";
}

TEST(GpuSweep, CudaMatchesCpuOverFiftySteps) {
  LRFIND_SKIP_WITHOUT_GPU();
  const auto cpu = sweepOn(c10::Device(c10::DeviceType::CPU), "mlp", kSteps);
  const auto gpu = sweepOn(c10::Device(c10::DeviceType::CUDA, 0), "mlp", kSteps);
  ASSERT_EQ(cpu.loss_raw.size(), kSteps);
  ASSERT_EQ(gpu.loss_raw.size(), kSteps);
  const std::size_t compared = comparedSteps(cpu);
  ASSERT_GE(compared, kMinCompared);
  for (std::size_t k = 0; k < kSteps; ++k) EXPECT_EQ(cpu.lr[k], gpu.lr[k]) << "step " << k;
  for (std::size_t k = 0; k < compared; ++k) {
    EXPECT_NEAR(gpu.loss_raw[k], cpu.loss_raw[k], std::max(kRelTol * std::abs(cpu.loss_raw[k]), kAbsTol))
        << "step " << k;
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

// The built-in MLP on GPU 0 with SGD and the synthetic set, and a copy of its weights.
struct GpuMlp {
  c10::Device device{c10::DeviceType::CUDA, 0};
  runtime::Dataset data = runtime::makeSynthetic(0);
  runtime::LoadedModel loaded = runtime::loadModel("mlp", data, 10, 0, device);
  std::unique_ptr<torch::optim::Optimizer> optimizer =
      runtime::makeOptimizer(loaded.model->parameters(), runtime::OptimizerConfig{});
  runtime::ShardedBatches batches{data, runtime::BatchPlan{}, device};
  std::vector<at::Tensor> before;

  GpuMlp() {
    for (auto& p : loaded.model->parameters()) before.push_back(p.detach().clone());
  }
  // The weights are float32 on the GPU and as they were before the sweep.
  void expectRestored() {
    const auto after = loaded.model->parameters();
    for (std::size_t i = 0; i < before.size(); ++i) {
      EXPECT_TRUE(after[i].is_cuda());
      EXPECT_EQ(after[i].scalar_type(), at::kFloat);
      EXPECT_TRUE(at::equal(after[i], before[i])) << "parameter " << i;
    }
  }
};

// The model is left as it was, on the GPU too.
TEST(GpuSweep, RestoresTheModelOnTheDevice) {
  LRFIND_SKIP_WITHOUT_GPU();
  GpuMlp m;
  finder::SweepOptions options;
  options.num_training = 10;
  finder::runSweep(*m.loaded.model, *m.optimizer, m.batches, runtime::makeLoss("cross_entropy"), options);
  m.expectRestored();
}

// fp16 on the GPU: float16 autocast, float32 weights restored, and a forced overflow
// skips that step's update and halves the scale. Step 4's loss times 1e3 (about 2300)
// still fits float16 (65504), so the loss itself is finite; times the scale of 2^16 its
// gradients do not.
TEST(GpuSweep, Fp16OverflowSkipsTheStepAndHalvesTheScale) {
  LRFIND_SKIP_WITHOUT_GPU();
  GpuMlp m;
  finder::SweepOptions options;
  options.num_training = 10;
  options.early_stop_threshold.reset();
  options.precision = finder::Precision::kFp16;
  int64_t step = 0;
  finder::SweepContext ctx;
  ctx.before_step = [&](int64_t k) { step = k; };
  const auto ce = runtime::makeLoss("cross_entropy");
  finder::LossFn loss = [&](const at::Tensor& out, const at::Tensor& y) {
    EXPECT_EQ(out.scalar_type(), at::kHalf) << "the forward pass runs in float16";
    const auto l = ce(out, y);
    return step == 4 ? l * 1e3 : l;
  };
  const auto r = finder::runSweep(*m.loaded.model, *m.optimizer, m.batches, loss, options, ctx);
  ASSERT_EQ(r.skipped.size(), 10u);
  for (std::size_t k = 0; k < 10; ++k) {
    EXPECT_EQ(r.skipped[k], k == 4 ? 1 : 0) << "step " << k;
    EXPECT_EQ(r.loss_scale[k], k <= 4 ? 65536.0 : 32768.0) << "step " << k;
  }
  m.expectRestored();
}

}  // namespace
}  // namespace lrfind
