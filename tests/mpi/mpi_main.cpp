// main() for GoogleTest binaries run under mpirun (as nccl-tests do): initializes MPI,
// prints on rank 0 only, and makes every rank agree on pass/fail, so that a failure on
// any rank fails the whole job (and ctest).

#include <mpi.h>

#include <cstdio>

#include <gtest/gtest.h>

#include "comm/mpi_environment.h"

int main(int argc, char** argv) {
  lrfind::comm::MpiEnvironment mpi;
  ::testing::InitGoogleTest(&argc, argv);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (rank != 0) {
    // Failures on other ranks still print (with their rank), the progress does not.
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  const int local = RUN_ALL_TESTS();
  if (local != 0) std::fprintf(stderr, "rank %d of %d: tests FAILED\n", rank, size);
  int global = 0;
  MPI_Allreduce(&local, &global, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (rank == 0) std::printf("%s on all %d ranks\n", global == 0 ? "PASSED" : "FAILED", size);
  return global;
}
