#include "runtime/world.h"

#include <sched.h>
#include <unistd.h>

#include <cstdlib>
#include <thread>
#include <vector>

#include "comm/agreement.h"
#include "comm/mpi_communicator.h"
#include "comm/mpi_environment.h"
#include "comm/self_communicator.h"
#include "common/error.h"

namespace lrfind::runtime {
namespace {

int intVar(const char* (*get)(const char*), const char* name) {
  const char* v = get(name);
  if (v == nullptr || *v == '\0') return -1;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  return (end != nullptr && *end == '\0' && n >= 0) ? static_cast<int>(n) : -1;
}

const char* processEnv(const char* name) { return std::getenv(name); }

}  // namespace

LauncherInfo detectLauncher(const char* (*get)(const char*)) {
  if (get == nullptr) get = processEnv;
  LauncherInfo info;
  if (intVar(get, "OMPI_COMM_WORLD_SIZE") >= 0) {
    info.launcher = "openmpi";
    info.rank = intVar(get, "OMPI_COMM_WORLD_RANK");
    info.size = intVar(get, "OMPI_COMM_WORLD_SIZE");
    info.local_rank = intVar(get, "OMPI_COMM_WORLD_LOCAL_RANK");
    info.local_size = intVar(get, "OMPI_COMM_WORLD_LOCAL_SIZE");
  } else if (intVar(get, "SLURM_STEP_NUM_TASKS") >= 0) {
    // srun sets the step variables; a batch script's own environment (SLURM_NTASKS)
    // describes the allocation, not a launch, so it does not count.
    info.launcher = "slurm";
    info.rank = intVar(get, "SLURM_PROCID");
    info.size = intVar(get, "SLURM_STEP_NUM_TASKS");
    info.local_rank = intVar(get, "SLURM_LOCALID");
  } else if (intVar(get, "PMI_SIZE") >= 0) {
    info.launcher = "mpich";
    info.rank = intVar(get, "PMI_RANK");
    info.size = intVar(get, "PMI_SIZE");
    info.local_rank = intVar(get, "MPI_LOCALRANKID");
    info.local_size = intVar(get, "MPI_LOCALNRANKS");
  }
  return info;
}

World::World(const std::string& backend) {
  const LauncherInfo launcher = detectLauncher();
  LRFIND_INPUT_CHECK(backend == "auto" || backend == "self" || backend == "mpi",
                     "--backend must be auto, self or mpi; got \"", backend, "\"");
  const bool launched = launcher.size > 1;
  LRFIND_INPUT_CHECK(!(backend == "self" && launched), "--backend self, but ", launcher.launcher, " started ",
                     launcher.size, " ranks: each would sweep alone and write the same files; use --backend mpi "
                     "or auto");
  if (backend == "self" || (backend == "auto" && !launched)) {
    comm_ = std::make_unique<comm::SelfCommunicator>();
    return;
  }
  mpi_ = std::make_unique<comm::MpiEnvironment>();
  auto mpi = std::make_unique<comm::MpiCommunicator>();
  if (launcher.size >= 0) {
    LRFIND_INPUT_CHECK(mpi->size() == launcher.size, launcher.launcher, " started ", launcher.size,
                       " ranks but MPI sees a world of ", mpi->size(),
                       " (an srun without PMI support starts singletons: try srun --mpi=pmix, or mpirun)");
    LRFIND_INPUT_CHECK(launcher.rank < 0 || mpi->rank() == launcher.rank, "MPI rank ", mpi->rank(),
                       " differs from the launcher's rank ", launcher.rank);
  }
  if (launcher.local_rank >= 0 && launcher.local_rank != mpi->localRank()) {
    std::fprintf(stderr, "lrfind_dist: warning: rank %d: node-local rank %d from MPI, %d from %s; using MPI's\n",
                 mpi->rank(), mpi->localRank(), launcher.local_rank, launcher.launcher.c_str());
  }
  local_rank_ = mpi->localRank();
  local_size_ = mpi->localSize();
  comm_ = std::move(mpi);
}

World::~World() { comm_.reset(); }

int World::defaultThreads() const {
  cpu_set_t set;
  CPU_ZERO(&set);
  int cpus = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set)
                                                          : static_cast<int>(std::thread::hardware_concurrency());
  // The affinity mask may already be per-rank (srun --cpu-bind, mpirun --bind-to):
  // divide only when this rank can see all of the node's CPUs.
  const int node_cpus = static_cast<int>(std::thread::hardware_concurrency());
  if (cpus >= node_cpus && local_size_ > 1) cpus /= local_size_;
  return std::max(1, cpus);
}

void exchangePeerNames(comm::Communicator& comm) {
  if (comm.size() == 1) return;
  char host[64] = {0};
  ::gethostname(host, sizeof(host) - 1);
  const std::string mine = concat(host, ", pid ", ::getpid());
  std::vector<std::string> names = comm::gatherText(comm, 0, mine);
  names.resize(static_cast<std::size_t>(comm.size()));  // the others: rank 0's and their own
  names[0] = comm::broadcastText(comm, 0, names[0]);
  names[static_cast<std::size_t>(comm.rank())] = mine;
  comm.setPeerNames(std::move(names));
}

}  // namespace lrfind::runtime
