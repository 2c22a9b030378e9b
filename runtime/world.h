#pragma once
// Who this process is: the launcher's view (Open MPI, Slurm, MPICH/PMI environment
// variables), the communicator backend chosen from it, and the node-local layout that
// sets the default thread count.
//
// Backends: "self" (a world of one, no MPI at all), "mpi", or "auto" = MPI when a
// launcher started more than one rank, else self. Running without any launcher never
// touches MPI.

#include <memory>
#include <string>

#include "comm/communicator.h"

namespace lrfind::comm {
class MpiEnvironment;
}

namespace lrfind::runtime {

// What the launcher's environment variables say; -1 where they say nothing.
struct LauncherInfo {
  std::string launcher = "none";  // "openmpi", "slurm", "mpich", or "none"
  int rank = -1;
  int size = -1;
  int local_rank = -1;
  int local_size = -1;
};

// `getenv` is injectable for tests; by default the process environment.
LauncherInfo detectLauncher(const char* (*getenv_fn)(const char*) = nullptr);

class World {
 public:
  // Throws InputError for an unknown backend, or when MPI's world disagrees with the
  // launcher (e.g. srun without PMI support starts N singletons).
  explicit World(const std::string& backend);
  ~World();  // the communicator first, then MPI_Finalize
  World(const World&) = delete;
  World& operator=(const World&) = delete;

  comm::Communicator& comm() { return *comm_; }
  int rank() const { return comm_->rank(); }
  int size() const { return comm_->size(); }
  int localRank() const { return local_rank_; }
  int localSize() const { return local_size_; }
  // CPUs this process may run on (its affinity mask) divided among the local ranks.
  int defaultThreads() const;

 private:
  std::unique_ptr<comm::MpiEnvironment> mpi_;  // declared first: destroyed last
  std::unique_ptr<comm::Communicator> comm_;
  int local_rank_ = 0;
  int local_size_ = 1;
};

// Collective: rank 0 learns every rank's "host, pid N", the others rank 0's, and each
// stores them with comm.setPeerNames(), so that stall warnings and timeouts name where a
// rank runs.
void exchangePeerNames(comm::Communicator& comm);

}  // namespace lrfind::runtime
