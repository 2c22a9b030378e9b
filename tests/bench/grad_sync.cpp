// grad_sync: what lrfind's bucketed gradient averaging costs against the bound, one
// MPI_Allreduce over a single flat buffer holding all gradient bytes, and against one
// allreduce call per parameter. Run under mpirun (2 ranks for the figure in the README):
//
//   mpirun -np 2 build/tests/bench/grad_sync [--iters N] [--bucket-mb B]
//
// Also: lrfind's averaging through shared memory (every rank on one node), and one copy
// of all gradient bytes (what memory bandwidth allows).
// The model is a deep MLP of about 2.2M parameters in 64 tensors; the variants run
// interleaved, each call after a barrier, and the maximum over ranks of the median is used.

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "comm/grad_sync.h"
#include "comm/mpi_communicator.h"
#include "comm/mpi_environment.h"

namespace {

using Clock = std::chrono::steady_clock;

double medianOverRanks(std::vector<double> t) {
  std::sort(t.begin(), t.end());
  double m = t[t.size() / 2], worst = 0;
  MPI_Allreduce(&m, &worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return worst;
}

// Times the variants interleaved, in a rotating order, so that drift and warm-up hit
// them alike; each call is preceded by a barrier.
std::vector<double> timeInterleaved(int iters, const std::vector<std::function<void()>>& variants) {
  const std::size_t n = variants.size();
  std::vector<std::vector<double>> t(n);
  for (int i = 0; i < iters + 3; ++i) {
    for (std::size_t j = 0; j < n; ++j) {
      const std::size_t v = (j + static_cast<std::size_t>(i)) % n;
      MPI_Barrier(MPI_COMM_WORLD);
      const auto t0 = Clock::now();
      variants[v]();
      const double s = std::chrono::duration<double>(Clock::now() - t0).count();
      if (i >= 3) t[v].push_back(s);  // the first rounds warm up buffers and connections
    }
  }
  std::vector<double> out;
  for (auto& times : t) out.push_back(medianOverRanks(times));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  int iters = 30;
  double bucket_mb = 25;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--iters") iters = std::atoi(argv[i + 1]);
    else if (k == "--bucket-mb") bucket_mb = std::atof(argv[i + 1]);
  }
  lrfind::comm::MpiEnvironment env;
  lrfind::comm::MpiCommunicator comm;
  at::set_num_threads(1);

  torch::manual_seed(0);
  // A deep MLP (784-256, 30 x 256-256, 256-10): about 2.2M parameters in 64 tensors,
  // so that per-parameter calls show what they cost.
  torch::nn::Sequential net(torch::nn::Linear(784, 256));
  for (int i = 0; i < 30; ++i) net->push_back(torch::nn::Linear(256, 256));
  net->push_back(torch::nn::Linear(256, 10));
  auto params = net->parameters();
  int64_t total = 0;
  for (auto& p : params) {
    p.mutable_grad() = torch::randn_like(p);
    total += p.numel();
  }

  // lrfind: gradients as views of one flat buffer, one allreduce per bucket.
  lrfind::comm::GradientAverager averager(comm, params, static_cast<std::size_t>(bucket_mb * (1 << 20)),
                                          /*loss_prescaled=*/true);
  averager.average();  // attaches the views (the one copy, outside the timing)

  // The same through shared memory (all ranks on this node), on parameters of its own.
  std::vector<at::Tensor> shm_params;
  for (auto& p : params) {
    shm_params.push_back(torch::zeros_like(p).set_requires_grad(true));
    shm_params.back().mutable_grad() = torch::randn_like(p);
  }
  lrfind::comm::AveragingOptions shm_options;
  shm_options.bucket_bytes = shm_options.first_bucket_bytes = static_cast<std::size_t>(bucket_mb * (1 << 20));
  shm_options.loss_prescaled = true;
  lrfind::comm::GradientAverager shm_averager(comm, shm_params, shm_options);
  shm_averager.average();

  // The bound: one MPI_Allreduce over all gradient bytes, already flat.
  at::Tensor flat = torch::randn({total});
  // One allreduce per parameter, as a naive loop does.
  std::vector<at::Tensor> grads;
  for (auto& p : params) grads.push_back(torch::randn_like(p));

  // What memory bandwidth allows: one copy of all gradient bytes.
  at::Tensor copy_to = torch::empty({total});
  const auto t = timeInterleaved(
      iters, {[&] { averager.average(); },
              [&] {
                MPI_Allreduce(MPI_IN_PLACE, flat.data_ptr(), static_cast<int>(total), MPI_FLOAT, MPI_SUM,
                              MPI_COMM_WORLD);
              },
              [&] {
                for (auto& g : grads) comm.allreduce(g);
              },
              [&] { shm_averager.average(); }, [&] { copy_to.copy_(flat); }});
  const double t_bucketed = t[0], t_flat = t[1], t_per_param = t[2], t_shm = t[3], t_copy = t[4];

  if (comm.rank() == 0) {
    std::printf("grad_sync: %d ranks, %lld parameters (%.1f MB of float32 gradients) in %zu tensors, "
                "bucket %.1f MiB -> %zu bucket(s), median of %d\n",
                comm.size(), static_cast<long long>(total), total * 4 / 1e6, params.size(), bucket_mb,
                averager.numBuckets(), iters);
    std::printf("  one flat MPI_Allreduce (bound)   %8.3f ms\n", t_flat * 1e3);
    std::printf("  lrfind bucketed averaging        %8.3f ms  ratio %.3f\n", t_bucketed * 1e3, t_bucketed / t_flat);
    std::printf("  one allreduce per parameter      %8.3f ms  ratio %.3f\n", t_per_param * 1e3, t_per_param / t_flat);
    std::printf("  lrfind through shared memory     %8.3f ms  ratio %.3f  (%s)\n", t_shm * 1e3, t_shm / t_flat,
                shm_averager.transport().c_str());
    std::printf("  one memcpy of the gradient bytes %8.3f ms  ratio %.3f\n", t_copy * 1e3, t_copy / t_flat);
  }
  return 0;
}
