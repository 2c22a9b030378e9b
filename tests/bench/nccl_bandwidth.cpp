// nccl_bandwidth: the NCCL backend's allreduce of one large float32 buffer (100 MB by
// default), as nccl-tests reports it. Run under mpirun, one rank per GPU:
//
//   mpirun -np <GPUs> build/tests/bench/nccl_bandwidth [--mb 100] [--iters 20]
//
// Prints the median time per allreduce (max over ranks), the algorithm bandwidth
// (bytes / time) and the bus bandwidth (algbw · 2(n−1)/n, comparable across rank
// counts). Exits 0 with a note where no GPU is usable.

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <ATen/ATen.h>
#include <torch/cuda.h>

#include "comm/mpi_communicator.h"
#include "comm/mpi_environment.h"
#include "comm/nccl_communicator.h"

int main(int argc, char** argv) {
  lrfind::comm::MpiEnvironment mpi;
  double mb = 100;
  int iters = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--mb") == 0) mb = std::atof(argv[i + 1]);
    if (std::strcmp(argv[i], "--iters") == 0) iters = std::atoi(argv[i + 1]);
  }
  lrfind::comm::MpiCommunicator world;
  // LibTorch decides, as in nccl_test: the buffer is LibTorch's (0 without CUDA).
  const int gpus = static_cast<int>(torch::cuda::device_count());
  int usable = gpus > 0 && gpus >= world.localSize() ? 1 : 0, all = 0;
  MPI_Allreduce(&usable, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (all == 0) {
    if (world.rank() == 0) {
      std::printf("nccl_bandwidth: skipped: needs LibTorch with CUDA and one GPU per rank (LibTorch sees %d, %d local "
                  "ranks)\n",
                  gpus, world.localSize());
    }
    return 0;
  }
  lrfind::comm::NcclOptions options;
  options.device = world.localRank() % gpus;
  lrfind::comm::NcclCommunicator nccl(world, options);
  const auto count = static_cast<int64_t>(mb * 1e6 / 4);
  at::Tensor buffer = at::ones({count}, at::TensorOptions().dtype(at::kFloat).device(at::kCUDA, options.device));
  for (int i = 0; i < 3; ++i) nccl.allreduce(buffer);  // warm-up: NCCL sets up its channels
  nccl.synchronize();
  std::vector<double> seconds;
  for (int i = 0; i < iters; ++i) {
    MPI_Barrier(MPI_COMM_WORLD);
    const auto t0 = std::chrono::steady_clock::now();
    nccl.allreduce(buffer);
    nccl.synchronize();
    seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(seconds.begin(), seconds.end());
  double median = seconds[seconds.size() / 2], worst = 0;
  MPI_Allreduce(&median, &worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  if (world.rank() == 0) {
    const double bytes = static_cast<double>(count) * 4;
    const double algbw = bytes / worst / 1e9;
    const int n = world.size();
    std::printf("nccl_bandwidth: %d rank(s), %.0f MB float32 allreduce: %.3f ms, algbw %.1f GB/s, busbw %.1f GB/s\n",
                n, bytes / 1e6, worst * 1e3, algbw, algbw * 2.0 * (n - 1) / n);
  }
  return 0;
}
