#pragma once
// Test-local pieces for the sweep tests, built from finder/ and LibTorch alone so that a
// test of the finder links no runtime/: a seeded synthetic classification set, a
// BatchSource over it, a cross-entropy loss, LibTorch's optimizers by name, a small
// model (SweepTask) and a deep snapshot of everything the StateGuard promises to restore.
//
// The data and batch order are seeded and platform-independent (mt19937_64, Box-Muller),
// but they are not runtime::makeSynthetic's bits; a test that compares against numbers
// from that set belongs with runtime.

#include <cmath>
#include <cstdint>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <torch/nn.h>
#include <torch/optim.h>

#include "finder/model.h"
#include "finder/state_guard.h"
#include "finder/sweep.h"

namespace lrfind::testing {

struct Classification {
  at::Tensor x;  // float32 [samples, features]
  at::Tensor y;  // int64 [samples], labels in [0, classes)
};

// Gaussian blobs, one per class (centers ~ N(0, 1.5²), unit noise): learnable, so a
// small net's loss falls, and the same seed gives the same bits everywhere.
inline Classification makeClassification(uint64_t seed, int64_t samples = 4096, int64_t features = 32,
                                         int64_t classes = 10) {
  std::mt19937_64 rng(seed + 0x5eedULL);
  auto uniform = [&] { return (static_cast<double>(rng() >> 11) + 0.5) * 0x1.0p-53; };
  auto normal = [&] { return std::sqrt(-2.0 * std::log(uniform())) * std::cos(2.0 * M_PI * uniform()); };
  std::vector<float> centers(static_cast<std::size_t>(classes * features));
  for (auto& c : centers) c = static_cast<float>(1.5 * normal());
  Classification d{at::empty({samples, features}, at::kFloat), at::empty({samples}, at::kLong)};
  auto* x = d.x.data_ptr<float>();
  auto* y = d.y.data_ptr<int64_t>();
  for (int64_t i = 0; i < samples; ++i) {
    const int64_t label = static_cast<int64_t>(rng() % static_cast<uint64_t>(classes));
    y[i] = label;
    for (int64_t f = 0; f < features; ++f) {
      x[i * features + f] = centers[static_cast<std::size_t>(label * features + f)] + static_cast<float>(normal());
    }
  }
  return d;
}

// Batches of `batch_size` consecutive positions of one endless stream: position p is
// sample perm_e[p mod n] of epoch e = p / n, perm_e a seeded shuffle (or the identity
// with shuffle off). Without shuffle, batches of 16 thus cover exactly the samples of
// batches of 32, in the same order.
class TensorBatches final : public finder::BatchSource {
 public:
  TensorBatches(Classification data, int64_t batch_size, bool shuffle, uint64_t seed = 0)
      : data_(std::move(data)), batch_size_(batch_size), shuffle_(shuffle), seed_(seed) {
    EXPECT_GE(data_.x.size(0), batch_size_) << "fewer samples than one batch";
  }

  finder::Batch next() override {
    std::vector<int64_t> idx(static_cast<std::size_t>(batch_size_));
    for (auto& i : idx) i = sampleAt(position_++);
    const at::Tensor index = at::tensor(idx, at::kLong);
    return {data_.x.index_select(0, index), data_.y.index_select(0, index)};
  }

 private:
  int64_t sampleAt(int64_t position) {
    const int64_t n = data_.x.size(0);
    if (!shuffle_) return position % n;
    const int64_t epoch = position / n;
    if (epoch != perm_epoch_) {
      perm_.resize(static_cast<std::size_t>(n));
      std::iota(perm_.begin(), perm_.end(), int64_t{0});
      std::mt19937_64 rng(seed_ * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(epoch) + 1);
      // Fisher–Yates with a modulo draw: a tiny bias does not matter here, fixed bits do
      // (std::shuffle's are not specified across standard libraries).
      for (int64_t i = n - 1; i > 0; --i) {
        std::swap(perm_[static_cast<std::size_t>(i)],
                  perm_[static_cast<std::size_t>(rng() % static_cast<uint64_t>(i + 1))]);
      }
      perm_epoch_ = epoch;
    }
    return perm_[static_cast<std::size_t>(position % n)];
  }

  Classification data_;
  int64_t batch_size_;
  bool shuffle_;
  uint64_t seed_;
  int64_t position_ = 0;
  int64_t perm_epoch_ = -1;
  std::vector<int64_t> perm_;
};

// Mean cross-entropy over class labels.
inline finder::LossFn crossEntropy() {
  return [](const at::Tensor& out, const at::Tensor& y) { return torch::nn::functional::cross_entropy(out, y); };
}

// LibTorch's optimizers whose state the StateGuard deep-copies by type.
inline const std::vector<std::string>& libTorchOptimizerNames() {
  static const std::vector<std::string> kNames = {"sgd", "adam", "adamw", "rmsprop", "adagrad"};
  return kNames;
}

// One of libTorchOptimizerNames(), built directly with torch::optim. SGD and RMSprop get
// momentum so that every state tensor the snapshot reads exists.
inline std::unique_ptr<torch::optim::Optimizer> makeLibTorchOptimizer(const std::string& name,
                                                                      const std::vector<at::Tensor>& params,
                                                                      double lr) {
  using namespace torch::optim;
  if (name == "sgd") return std::make_unique<SGD>(params, SGDOptions(lr).momentum(0.9));
  if (name == "adam") return std::make_unique<Adam>(params, AdamOptions(lr));
  if (name == "adamw") return std::make_unique<AdamW>(params, AdamWOptions(lr));
  if (name == "rmsprop") return std::make_unique<RMSprop>(params, RMSpropOptions(lr).momentum(0.9));
  if (name == "adagrad") return std::make_unique<Adagrad>(params, AdagradOptions(lr));
  ADD_FAILURE() << "no optimizer \"" << name << "\" in the test fixture";
  return nullptr;
}

// A small classifier (32 features, 10 classes) over a seeded data set. Two tasks built
// alike have the same weights and the same batches.
struct SweepTask {
  Classification data = makeClassification(0);
  torch::nn::Sequential net{nullptr};
  std::unique_ptr<finder::Model> model;
  finder::LossFn loss = crossEntropy();

  explicit SweepTask(bool batch_norm = true) {
    torch::manual_seed(0);
    // BatchNorm gives the model buffers, which the guard must restore too.
    net = batch_norm ? torch::nn::Sequential(torch::nn::Linear(32, 64), torch::nn::BatchNorm1d(64),
                                             torch::nn::ReLU(), torch::nn::Linear(64, 10))
                     : torch::nn::Sequential(torch::nn::Linear(32, 64), torch::nn::ReLU(),
                                             torch::nn::Linear(64, 10));
    model = finder::makeModel(net);
  }
  TensorBatches batches(int64_t batch_size = 32, bool shuffle = true) const {
    return TensorBatches(data, batch_size, shuffle);
  }
};

// Everything the guard promises to restore, deep-copied.
struct Snapshot {
  std::vector<at::Tensor> params, grads, buffers, opt_state;
  std::vector<double> lrs;
  std::size_t state_entries = 0;
  bool training = false;

  Snapshot(finder::Model& m, torch::optim::Optimizer& opt) {
    for (auto& p : m.parameters()) {
      params.push_back(p.detach().clone());
      grads.push_back(p.grad().defined() ? p.grad().clone() : at::Tensor());
    }
    for (auto& b : m.buffers()) buffers.push_back(b.detach().clone());
    opt_state = optimizerTensors(m, opt);
    state_entries = opt.state().size();
    for (auto& g : opt.param_groups()) lrs.push_back(g.options().get_lr());
    training = m.isTraining();
  }

  static std::vector<at::Tensor> optimizerTensors(finder::Model& m, torch::optim::Optimizer& opt) {
    std::vector<at::Tensor> out;
    for (auto& p : m.parameters()) {
      auto it = opt.state().find(finder::optimizerStateKey(opt.state(), p));
      if (it == opt.state().end()) continue;
      if (auto* sgd = dynamic_cast<torch::optim::SGDParamState*>(it->second.get())) {
        out.push_back(sgd->momentum_buffer().clone());
      } else if (auto* adam = dynamic_cast<torch::optim::AdamParamState*>(it->second.get())) {
        out.push_back(adam->exp_avg().clone());
        out.push_back(adam->exp_avg_sq().clone());
        out.push_back(at::tensor(static_cast<double>(adam->step())));
      } else if (auto* adamw = dynamic_cast<torch::optim::AdamWParamState*>(it->second.get())) {
        out.push_back(adamw->exp_avg().clone());
        out.push_back(adamw->exp_avg_sq().clone());
        out.push_back(at::tensor(static_cast<double>(adamw->step())));
      } else if (auto* rms = dynamic_cast<torch::optim::RMSpropParamState*>(it->second.get())) {
        out.push_back(rms->square_avg().clone());
        out.push_back(rms->momentum_buffer().clone());
        out.push_back(at::tensor(static_cast<double>(rms->step())));
      } else if (auto* ada = dynamic_cast<torch::optim::AdagradParamState*>(it->second.get())) {
        out.push_back(ada->sum().clone());
        out.push_back(at::tensor(static_cast<double>(ada->step())));
      } else {
        ADD_FAILURE() << "unknown optimizer state type in the test snapshot";
      }
    }
    return out;
  }

  void expectEqual(finder::Model& m, torch::optim::Optimizer& opt) const {
    Snapshot now(m, opt);
    auto same = [](const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b, const char* what) {
      ASSERT_EQ(a.size(), b.size()) << what;
      for (std::size_t i = 0; i < a.size(); ++i) {
        ASSERT_EQ(a[i].defined(), b[i].defined()) << what << " " << i;
        if (a[i].defined()) {
          EXPECT_TRUE(torch::equal(a[i], b[i])) << what << " " << i << " differs";
        }
      }
    };
    same(params, now.params, "parameter");
    same(grads, now.grads, "gradient");
    same(buffers, now.buffers, "buffer");
    same(opt_state, now.opt_state, "optimizer state");
    EXPECT_EQ(state_entries, now.state_entries);
    EXPECT_EQ(lrs, now.lrs);
    EXPECT_EQ(training, now.training);
  }
};

// `steps` plain training steps, so that the optimizer has state to restore.
inline void warmUp(SweepTask& t, torch::optim::Optimizer& opt, int steps) {
  auto batches = t.batches();
  for (int i = 0; i < steps; ++i) {
    opt.zero_grad();
    auto b = batches.next();
    t.loss(t.model->forward(b.input), b.target).backward();
    opt.step();
  }
}

// Warms `opt` up, sweeps 20 steps and expects the model and `opt` exactly as before.
inline void expectSweepRestores(SweepTask& t, torch::optim::Optimizer& opt, const std::string& name) {
  warmUp(t, opt, 2);
  const Snapshot before(*t.model, opt);
  ASSERT_FALSE(before.opt_state.empty()) << name;
  auto batches = t.batches();
  finder::SweepOptions o;
  o.num_training = 20;
  finder::runSweep(*t.model, opt, batches, t.loss, o);
  SCOPED_TRACE(name);
  before.expectEqual(*t.model, opt);
}

}  // namespace lrfind::testing
