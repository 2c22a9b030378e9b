#pragma once
// What the MPI sweep benchmarks share (bounded_wait, overlap): random batches, an MLP
// given its widths, a timed sweep, the median. Benchmarks only; header-only.

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include <torch/torch.h>

#include "comm/communicator.h"
#include "finder/model.h"
#include "finder/sweep.h"

namespace lrfind::bench {

// Random inputs and labels, cycled; the same stream on every run of a model.
class RandomBatches final : public finder::BatchSource {
 public:
  RandomBatches(int64_t features, int64_t classes, int64_t batch, int rank) {
    torch::manual_seed(100 + rank);
    x_ = torch::randn({kBatches * batch, features});
    y_ = torch::randint(0, classes, {kBatches * batch});
    batch_ = batch;
  }
  finder::Batch next() override {
    const int64_t start = (pos_++ % kBatches) * batch_;
    return {x_.narrow(0, start, batch_), y_.narrow(0, start, batch_)};
  }

 private:
  static constexpr int64_t kBatches = 64;
  torch::Tensor x_, y_;
  int64_t batch_ = 0;
  int64_t pos_ = 0;
};

// Seconds per step of one SGD sweep of an MLP with these widths, batch 16 per rank, on
// `comm` with `context` (its comm is set here), the maximum over MPI_COMM_WORLD. Every
// process of the world calls it; they start together.
inline double sweepStepSeconds(comm::Communicator& comm, const std::vector<int64_t>& widths, int64_t steps,
                               finder::SweepContext context = {}) {
  torch::manual_seed(0);
  torch::nn::Sequential net;
  for (std::size_t i = 0; i + 1 < widths.size(); ++i) {
    net->push_back(torch::nn::Linear(widths[i], widths[i + 1]));
    if (i + 2 < widths.size()) net->push_back(torch::nn::ReLU());
  }
  auto model = finder::makeModel(net);
  torch::optim::SGD opt(model->parameters(), torch::optim::SGDOptions(1e-4));
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  RandomBatches data(widths.front(), widths.back(), 16, rank);
  auto loss = [](const torch::Tensor& out, const torch::Tensor& t) {
    return torch::nn::functional::cross_entropy(out, t);
  };
  finder::SweepOptions o;
  o.min_lr = 1e-6;
  o.max_lr = 1e-3;
  o.num_training = steps;
  o.early_stop_threshold = std::nullopt;
  context.comm = &comm;
  MPI_Barrier(MPI_COMM_WORLD);
  const auto t0 = std::chrono::steady_clock::now();
  finder::runSweep(*model, opt, data, loss, o, context);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / static_cast<double>(steps);
  double worst = 0;
  MPI_Allreduce(&s, &worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return worst;
}

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace lrfind::bench
