// The sweep over MPI: equivalence with one process, identical parameters, errors and
// stop decisions agreed by every rank.

#include <mpi.h>

#include <cmath>
#include <limits>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "common/error.h"
#include "comm/mpi_communicator.h"
#include "comm/self_communicator.h"
#include "finder/sweep.h"
#include "lrfind/lrfind.h"
#include "runtime/batches.h"
#include "runtime/dataset.h"
#include "runtime/factories.h"

namespace lrfind {
namespace {

constexpr int64_t kGlobalBatch = 32;

struct SweepRun {
  finder::SweepResult result;
  std::vector<at::Tensor> final_params;
};

// `net` on the same data everywhere; `world` ranks of batch kGlobalBatch / W.
template <typename Net>
SweepRun sweepWith(Net net, comm::Communicator& comm, const finder::SweepOptions& options,
                   const finder::SweepContext& extra = {}, finder::LossFn loss = runtime::makeLoss("cross_entropy")) {
  const auto data = runtime::makeSynthetic(0);
  auto model = finder::makeModel(net);
  torch::optim::SGD opt(model->parameters(), torch::optim::SGDOptions(1e-4).momentum(0.5));
  runtime::BatchPlan plan;
  plan.batch_size = kGlobalBatch / comm.size();
  plan.rank = comm.rank();
  plan.world = comm.size();
  plan.shuffle = false;
  runtime::ShardedBatches batches(data, plan, c10::Device(c10::DeviceType::CPU));
  finder::SweepContext ctx = extra;
  ctx.comm = &comm;
  SweepRun run;
  run.result = finder::runSweep(*model, opt, batches, loss, options, ctx);
  for (auto& p : model->parameters()) run.final_params.push_back(p.detach().clone());
  return run;
}

// The same initial weights everywhere: a 32-64-10 MLP.
SweepRun sweep(comm::Communicator& comm, const finder::SweepOptions& options, const finder::SweepContext& extra = {},
               finder::LossFn loss = runtime::makeLoss("cross_entropy")) {
  torch::manual_seed(0);
  torch::nn::Sequential net(torch::nn::Linear(32, 64), torch::nn::ReLU(), torch::nn::Linear(64, 10));
  return sweepWith(net, comm, options, extra, std::move(loss));
}

uint64_t checksum(const std::vector<at::Tensor>& params) {
  uint64_t h = 1469598103934665603ULL;
  for (const auto& p : params) {
    const auto* b = static_cast<const unsigned char*>(p.data_ptr());
    for (std::size_t i = 0; i < p.nbytes(); ++i) h = (h ^ b[i]) * 1099511628211ULL;
  }
  return h;
}

// Min and max of a value over all ranks.
std::pair<int64_t, int64_t> extremes(comm::Communicator& comm, int64_t v) {
  at::Tensor lo = at::full({1}, v, at::kLong), hi = lo.clone();
  comm.allreduce(lo, comm::AllreduceOptions{comm::ReduceOp::kMin});
  comm.allreduce(hi, comm::AllreduceOptions{comm::ReduceOp::kMax});
  return {lo.item<int64_t>(), hi.item<int64_t>()};
}

TEST(MpiSweep, EqualsOneProcessWithTheGlobalBatch) {
  comm::MpiCommunicator comm;
  finder::SweepOptions o;
  o.min_lr = 1e-4;
  o.max_lr = 1.0;
  o.num_training = 60;
  o.restore_state = false;  // keep the final weights to compare them across ranks
  const SweepRun dist = sweep(comm, o);
  EXPECT_EQ(dist.result.world_size, comm.size());
  // Every rank applied the same averaged gradients: bitwise equal parameters.
  const auto [lo, hi] = extremes(comm, static_cast<int64_t>(checksum(dist.final_params) >> 1));
  EXPECT_EQ(lo, hi) << "final parameters differ across ranks";
  if (comm.rank() != 0) return;
  comm::SelfCommunicator self;
  const SweepRun single = sweep(self, o);
  ASSERT_EQ(single.result.stepsCompleted(), dist.result.stepsCompleted());
  for (int64_t k = 0; k < single.result.stepsCompleted(); ++k) {
    EXPECT_EQ(single.result.lr[k], dist.result.lr[k]) << k;
    const double a = single.result.loss_raw[k], b = dist.result.loss_raw[k];
    EXPECT_LT(std::abs(a - b) / std::abs(a), 1e-5) << "step " << k << ": " << a << " vs " << b;
    // The global mean is the mean of the ranks' means (equal batch sizes).
    double mean = 0;
    for (double v : dist.result.loss_per_rank[k]) mean += v / comm.size();
    EXPECT_NEAR(mean, b, 1e-12 * b) << k;
  }
  for (std::size_t m = 0; m < single.result.suggestions.size(); ++m) {
    EXPECT_EQ(single.result.suggestions[m].index, dist.result.suggestions[m].index)
        << finder::toString(single.result.suggestions[m].method);
  }
}

TEST(MpiSweep, ErrorOnOneRankEndsEveryRankWithItsMessage) {
  comm::MpiCommunicator comm;
  const int bad = comm.size() - 1;
  finder::SweepContext ctx;
  ctx.before_step = [&](int64_t step) {
    if (comm.rank() == bad && step == 5) throw std::runtime_error("injected fault");
  };
  try {
    sweep(comm, finder::SweepOptions{}, ctx);
    ADD_FAILURE() << "rank " << comm.rank() << " finished a sweep that failed elsewhere";
  } catch (const CommError& e) {
    EXPECT_EQ(std::string(e.what()), concat("rank ", bad, ", step 5: injected fault"));
  }
  comm.barrier();  // every rank got here: nobody hangs
}

TEST(MpiSweep, DivergenceStopsEveryRankAtTheSameStep) {
  comm::MpiCommunicator comm;
  finder::SweepOptions o;
  o.min_lr = 1e-3;
  o.max_lr = 1e4;
  finder::SweepContext ctx;
  ctx.check_consistency = true;
  const SweepRun run = sweep(comm, o, ctx);
  EXPECT_EQ(run.result.stop_reason, finder::StopReason::kDiverged);
  EXPECT_LT(run.result.stepsCompleted(), o.num_training);
  const auto [lo, hi] = extremes(comm, run.result.stepsCompleted());
  EXPECT_EQ(lo, hi);
}

// A NaN or Inf loss on one rank stops every rank as `nonfinite` at that step, and the
// suggestion (rank 0) ignores the point.
TEST(MpiSweep, NonFiniteLossOnOneRankStopsEveryRankAtTheSameStep) {
  comm::MpiCommunicator comm;
  const int bad = comm.size() - 1;
  for (const double poison : {std::nan(""), std::numeric_limits<double>::infinity()}) {
    int64_t calls = 0;
    const auto ce = runtime::makeLoss("cross_entropy");
    auto loss = [&](const at::Tensor& out, const at::Tensor& target) {
      const at::Tensor l = ce(out, target);
      return comm.rank() == bad && calls++ == 7 ? l * poison : l;
    };
    finder::SweepOptions o;
    o.skip_begin = 0;
    o.skip_end = 0;
    const SweepRun run = sweep(comm, o, {}, loss);
    EXPECT_EQ(run.result.stop_reason, finder::StopReason::kNonFinite) << poison;
    EXPECT_EQ(run.result.stepsCompleted(), 8) << poison;
    const auto [lo, hi] = extremes(comm, run.result.stepsCompleted());
    EXPECT_EQ(lo, hi);
    if (comm.rank() == 0) {
      ASSERT_EQ(run.result.loss_raw.size(), 8u);
      EXPECT_FALSE(std::isfinite(run.result.loss_raw.back()));
      const auto& s = run.result.suggestion();
      ASSERT_TRUE(s.found) << s.note;
      EXPECT_LT(s.index, 7) << "the non-finite point is never suggested";
      EXPECT_TRUE(std::isfinite(s.lr));
    }
  }
}

// The public API over MPI: every rank gets rank 0's suggestions.
TEST(MpiSweep, PublicApiGivesEveryRankTheSameSuggestion) {
  MPI_Comm world = MPI_COMM_WORLD;
  int rank = 0;
  MPI_Comm_rank(world, &rank);
  torch::manual_seed(0);
  torch::nn::Sequential net(torch::nn::Linear(8, 16), torch::nn::ReLU(), torch::nn::Linear(16, 3));
  torch::optim::SGD opt(net->parameters(), torch::optim::SGDOptions(0.1));
  torch::manual_seed(100 + rank);  // every rank its own data
  const auto x = torch::randn({256, 8});
  const auto y = (x.narrow(1, 0, 3).argmax(1));
  int64_t pos = 0;
  auto next = [&] {
    const int64_t start = (pos++ * 16) % (256 - 16);
    return std::make_pair(x.narrow(0, start, 16), y.narrow(0, start, 16));
  };
  auto loss = [](const torch::Tensor& out, const torch::Tensor& t) { return torch::nn::functional::cross_entropy(out, t); };
  lrfind::Options o;
  o.min_lr = 1e-4;
  o.max_lr = 10;
  o.mpi_comm = &world;
  const auto r = lrfind::findLr(net, opt, next, loss, o);
  ASSERT_TRUE(r.suggested_lr.has_value()) << "rank " << rank;
  double mine[2] = {*r.suggested_lr, static_cast<double>(r.lr.size())}, lo[2], hi[2];
  MPI_Allreduce(mine, lo, 2, MPI_DOUBLE, MPI_MIN, world);
  MPI_Allreduce(mine, hi, 2, MPI_DOUBLE, MPI_MAX, world);
  EXPECT_EQ(lo[0], hi[0]);
  EXPECT_EQ(lo[1], hi[1]);
  EXPECT_EQ(r.suggestions.size(), 5u);
  EXPECT_EQ(opt.param_groups()[0].options().get_lr(), 0.1) << "the optimizer is restored";
  o.max_lr = o.min_lr;  // bad options: invalid_argument on every rank, before any collective
  EXPECT_THROW(lrfind::findLr(net, opt, next, loss, o), std::invalid_argument);
}

// A stop request on one rank (a signal there) stops every rank after the same step.
TEST(MpiSweep, InterruptOnOneRankStopsEveryRankAtTheSameStep) {
  comm::MpiCommunicator comm;
  int64_t polls = 0;
  finder::SweepContext ctx;
  ctx.interrupted = [&] { return comm.rank() == comm.size() - 1 && polls++ >= 3; };
  const SweepRun run = sweep(comm, finder::SweepOptions{}, ctx);
  EXPECT_EQ(run.result.stop_reason, finder::StopReason::kInterrupted);
  EXPECT_EQ(run.result.stepsCompleted(), 4);
  const auto [lo, hi] = extremes(comm, run.result.stepsCompleted());
  EXPECT_EQ(lo, hi);
}

// A frozen layer (requires_grad false) stays exactly where it was on every rank and at
// every step, and the curve equals one process's with the global batch. Before the fix
// the gradient averager gave the frozen weights a zero gradient, and SGD's weight decay
// and momentum moved them on every rank but not in one process (36% apart by step 10).
// A small CNN with BatchNorm on the 32 synthetic features seen as 2x4x4 images: the
// batch statistics differ per rank, the gradients of the norm's weight and bias are
// averaged like any other.
struct SmallCnnImpl : torch::nn::Module {
  SmallCnnImpl()
      : conv(register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(2, 8, 3).padding(1)))),
        norm(register_module("norm", torch::nn::BatchNorm2d(8))),
        fc(register_module("fc", torch::nn::Linear(8 * 4 * 4, 10))) {}
  at::Tensor forward(const at::Tensor& x) {
    return fc->forward(torch::relu(norm->forward(conv->forward(x.view({-1, 2, 4, 4})))).flatten(1));
  }
  torch::nn::Conv2d conv;
  torch::nn::BatchNorm2d norm;
  torch::nn::Linear fc;
};
TORCH_MODULE(SmallCnn);

// Overlapped gradient averaging (allreduces started by hooks during backward) against
// the blocking one: the same buckets, small enough that parameters span several, and
// the same allreduce, so the same bits, with and without accumulation, over shared
// memory and over MPI messages, on an MLP and on a CNN with BatchNorm. (The overlapped
// runs rebuild their layout after the first step; shared memory and these small
// buckets' recursive doubling sum in an order that does not depend on it.)
TEST(MpiSweep, OverlappedAveragingEqualsBlockingBitForBit) {
  comm::MpiCommunicator comm;
  for (const bool cnn : {false, true}) {
    for (const bool shm : {true, false}) {
      for (const int64_t accumulate : {1, 4}) {
        const std::string what = concat(cnn ? "cnn" : "mlp", shm ? ", shared memory" : ", messages",
                                        ", accumulate ", accumulate);
        finder::SweepOptions o;
        o.min_lr = 1e-4;
        o.max_lr = 1.0;
        o.num_training = 30;
        o.accumulate = accumulate;
        o.restore_state = false;
        finder::SweepContext blocking;
        // 250 float32: the MLP's 32x64 weight spans 9 buckets, the CNN's fc weight 6.
        blocking.averaging.bucket_bytes = blocking.averaging.first_bucket_bytes = 1000;
        blocking.averaging.shared_memory = shm;
        blocking.averaging.overlap = false;
        finder::SweepContext overlapped = blocking;
        overlapped.averaging.overlap = true;
        const auto run = [&](const finder::SweepContext& ctx) {
          torch::manual_seed(0);
          if (cnn) return sweepWith(SmallCnn(), comm, o, ctx);
          torch::nn::Sequential mlp(torch::nn::Linear(32, 64), torch::nn::ReLU(), torch::nn::Linear(64, 10));
          return sweepWith(mlp, comm, o, ctx);
        };
        const SweepRun a = run(blocking);
        const SweepRun b = run(overlapped);
        ASSERT_EQ(a.final_params.size(), b.final_params.size());
        for (std::size_t i = 0; i < a.final_params.size(); ++i) {
          EXPECT_TRUE(at::equal(a.final_params[i], b.final_params[i])) << what << ", parameter " << i;
        }
        if (comm.rank() != 0) continue;
        ASSERT_EQ(a.result.loss_raw.size(), b.result.loss_raw.size()) << what;
        for (std::size_t k = 0; k < a.result.loss_raw.size(); ++k) {
          EXPECT_EQ(a.result.loss_raw[k], b.result.loss_raw[k]) << what << ", step " << k;
        }
      }
    }
  }
}

// A layer that forward never uses gets no gradient: the overlapped step must not wait
// for it. Its bucket goes out with zeros, every rank the same, and it stays put.
struct WithUnusedLayerImpl : torch::nn::Module {
  WithUnusedLayerImpl()
      : used(register_module("used", torch::nn::Linear(32, 10))),
        unused(register_module("unused", torch::nn::Linear(32, 10))) {}
  at::Tensor forward(const at::Tensor& x) { return used->forward(x); }
  torch::nn::Linear used;
  torch::nn::Linear unused;
};
TORCH_MODULE(WithUnusedLayer);

TEST(MpiSweep, OverlappedAveragingWithAnUnusedLayerCompletes) {
  comm::MpiCommunicator comm;
  torch::manual_seed(0);
  WithUnusedLayer net;
  const at::Tensor unused_start = net->unused->weight.detach().clone();
  const at::Tensor used_start = net->used->weight.detach().clone();
  finder::SweepOptions o;
  o.num_training = 10;
  o.restore_state = false;
  finder::SweepContext ctx;
  // The unused layer's buckets are separate from the used one's.
  ctx.averaging.bucket_bytes = ctx.averaging.first_bucket_bytes = 400;
  ctx.averaging.overlap = true;
  const SweepRun run = sweepWith(net, comm, o, ctx);
  EXPECT_EQ(run.result.stepsCompleted(), 10);
  EXPECT_TRUE(at::equal(net->unused->weight, unused_start));
  ASSERT_TRUE(net->unused->weight.grad().defined());
  EXPECT_EQ(net->unused->weight.grad().abs().max().item<float>(), 0.0f);
  EXPECT_FALSE(at::equal(net->used->weight, used_start));
}

// What the README says of BatchNorm under data parallelism: each rank normalizes with its
// own batch's statistics (PyTorch DDP without SyncBatchNorm), so W ranks of batch B are
// not one process of batch W·B even at step 0; without BatchNorm they are, up to float
// summation order.
TEST(MpiSweep, BatchNormMakesRanksDifferFromOneProcessAndNothingElseDoes) {
  comm::MpiCommunicator comm;
  comm::SelfCommunicator alone;
  finder::SweepOptions o;
  o.min_lr = 1e-4;
  o.max_lr = 1e-2;
  o.num_training = 5;
  auto step0 = [&](bool cnn, comm::Communicator& c) {
    torch::manual_seed(0);
    if (cnn) return sweepWith(SmallCnn(), c, o).result.loss_raw;
    torch::nn::Sequential mlp(torch::nn::Linear(32, 64), torch::nn::ReLU(), torch::nn::Linear(64, 10));
    return sweepWith(mlp, c, o).result.loss_raw;
  };
  const auto cnn_ranks = step0(true, comm), cnn_one = step0(true, alone);
  const auto mlp_ranks = step0(false, comm), mlp_one = step0(false, alone);
  if (comm.rank() != 0) return;
  const double cnn_diff = std::abs(cnn_ranks[0] - cnn_one[0]) / cnn_one[0];
  const double mlp_diff = std::abs(mlp_ranks[0] - mlp_one[0]) / mlp_one[0];
  std::printf("np %d x %lld vs 1 x %lld, step 0, relative difference: with BatchNorm %.2g, without %.2g\n",
              comm.size(), static_cast<long long>(kGlobalBatch / comm.size()), static_cast<long long>(kGlobalBatch),
              cnn_diff, mlp_diff);
  EXPECT_GT(cnn_diff, 1e-5) << "per-rank batch statistics, far above float summation order";
  EXPECT_LT(cnn_diff, 0.05) << "but the same curve";
  EXPECT_LT(mlp_diff, 1e-6);
}

// Loss scaling over ranks: only the last rank's loss overflows at step 3, yet every rank
// skips that update (the flag rides the step's gather and rank 0's decision) and halves
// its scale, so the parameters stay identical everywhere.
TEST(MpiSweep, AnOverflowOnOneRankSkipsTheStepOnEveryRank) {
  comm::MpiCommunicator comm;
  finder::SweepOptions o;
  o.min_lr = 1e-4;
  o.max_lr = 1e-1;
  o.num_training = 8;
  o.early_stop_threshold.reset();
  o.dynamic_loss_scale = true;
  o.restore_state = false;
  int64_t step = 0;
  std::vector<at::Tensor> weights;  // this rank's first weight before each step
  torch::manual_seed(0);
  torch::nn::Sequential mlp(torch::nn::Linear(32, 64), torch::nn::ReLU(), torch::nn::Linear(64, 10));
  finder::SweepContext ctx;
  ctx.check_consistency = true;  // the parameters agree across ranks at the end
  ctx.before_step = [&](int64_t k) {
    step = k;
    weights.push_back(mlp->parameters()[0].detach().clone());
  };
  const auto ce = runtime::makeLoss("cross_entropy");
  const bool overflows = comm.rank() == comm.size() - 1;
  finder::LossFn loss = [&](const at::Tensor& out, const at::Tensor& y) {
    const auto l = ce(out, y);
    return step == 3 && overflows ? l * 1e36 : l;
  };
  const SweepRun run = sweepWith(mlp, comm, o, ctx, loss);
  ASSERT_EQ(weights.size(), 8u);
  EXPECT_TRUE(at::equal(weights[4], weights[3])) << "rank " << comm.rank() << " applied the overflowing step";
  EXPECT_FALSE(at::equal(weights[3], weights[2])) << "rank " << comm.rank();
  if (comm.rank() != 0) return;
  ASSERT_EQ(run.result.skipped.size(), 8u);
  for (std::size_t k = 0; k < 8; ++k) {
    EXPECT_EQ(run.result.skipped[k], k == 3 ? 1 : 0) << "step " << k;
    EXPECT_EQ(run.result.loss_scale[k], k <= 3 ? 65536.0 : 32768.0) << "step " << k;
  }
}

TEST(MpiSweep, FrozenParametersStayPutAndTheCurveEqualsOneProcess) {
  MPI_Comm world = MPI_COMM_WORLD;
  int rank = 0, size = 1;
  MPI_Comm_rank(world, &rank);
  MPI_Comm_size(world, &size);
  constexpr int64_t kSamples = 512;
  torch::manual_seed(7);  // the same data and weights on every rank
  const auto x = torch::randn({kSamples, 8});
  const auto y = x.narrow(1, 0, 3).argmax(1);
  torch::nn::Sequential net(torch::nn::Linear(8, 16), torch::nn::Tanh(), torch::nn::Linear(16, 3));
  auto frozen = net->named_parameters()["0.weight"];
  for (auto& p : net[0]->parameters()) p.set_requires_grad(false);
  const auto frozen_start = frozen.detach().clone();
  torch::optim::SGD opt(net->parameters(), torch::optim::SGDOptions(1e-3).momentum(0.9).weight_decay(0.1));
  auto loss = [](const torch::Tensor& out, const torch::Tensor& t) {
    return torch::nn::functional::cross_entropy(out, t);
  };
  lrfind::Options o;
  o.min_lr = 1e-3;
  o.max_lr = 1.0;
  o.num_training = 40;
  o.early_stop_threshold = std::nullopt;

  // Step k uses global rows [k·32, (k+1)·32); `ranks` ranks take equal consecutive parts.
  auto run = [&](void* comm, int part, int ranks) {
    int64_t step = 0, moved = 0;
    auto next = [&] {
      if (!frozen.equal(frozen_start)) ++moved;
      const int64_t per_rank = kGlobalBatch / ranks;
      const int64_t start = (step++ * kGlobalBatch + part * per_rank) % kSamples;
      return std::make_pair(x.narrow(0, start, per_rank), y.narrow(0, start, per_rank));
    };
    o.mpi_comm = comm;
    const auto r = lrfind::findLr(net, opt, next, loss, o);
    EXPECT_EQ(moved, 0) << "rank " << rank << ": the frozen weights moved during the sweep";
    EXPECT_TRUE(frozen.equal(frozen_start)) << "rank " << rank;
    return r;
  };
  const auto dist = run(&world, rank, size);
  const auto alone = run(nullptr, 0, 1);
  if (rank != 0) return;
  ASSERT_EQ(dist.loss_raw.size(), alone.loss_raw.size());
  for (std::size_t k = 0; k < alone.loss_raw.size(); ++k) {
    EXPECT_NEAR(dist.loss_raw[k], alone.loss_raw[k], 1e-5 * std::abs(alone.loss_raw[k])) << "step " << k;
  }
}

}  // namespace
}  // namespace lrfind
