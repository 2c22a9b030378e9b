#include "runtime/world.h"

#include <map>
#include <string>

#include <gtest/gtest.h>

#include "common/error.h"

namespace lrfind::runtime {
namespace {

std::map<std::string, std::string> g_env;
const char* fakeEnv(const char* name) {
  auto it = g_env.find(name);
  return it == g_env.end() ? nullptr : it->second.c_str();
}

TEST(Launcher, OpenMpi) {
  g_env = {{"OMPI_COMM_WORLD_RANK", "3"}, {"OMPI_COMM_WORLD_SIZE", "8"}, {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
           {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"}};
  const auto info = detectLauncher(fakeEnv);
  EXPECT_EQ(info.launcher, "openmpi");
  EXPECT_EQ(info.rank, 3);
  EXPECT_EQ(info.size, 8);
  EXPECT_EQ(info.local_rank, 1);
  EXPECT_EQ(info.local_size, 2);
}

TEST(Launcher, SrunStepButNotTheBatchScript) {
  // An sbatch script's own environment describes the allocation: no launch.
  g_env = {{"SLURM_NTASKS", "8"}, {"SLURM_PROCID", "0"}, {"SLURM_JOB_ID", "42"}};
  EXPECT_EQ(detectLauncher(fakeEnv).launcher, "none");
  g_env = {{"SLURM_NTASKS", "8"}, {"SLURM_STEP_NUM_TASKS", "4"}, {"SLURM_PROCID", "2"}, {"SLURM_LOCALID", "0"}};
  const auto info = detectLauncher(fakeEnv);
  EXPECT_EQ(info.launcher, "slurm");
  EXPECT_EQ(info.size, 4);
  EXPECT_EQ(info.rank, 2);
  EXPECT_EQ(info.local_rank, 0);
}

TEST(Launcher, MpichHydra) {
  g_env = {{"PMI_RANK", "1"}, {"PMI_SIZE", "2"}, {"MPI_LOCALRANKID", "1"}, {"MPI_LOCALNRANKS", "2"}};
  const auto info = detectLauncher(fakeEnv);
  EXPECT_EQ(info.launcher, "mpich");
  EXPECT_EQ(info.rank, 1);
  EXPECT_EQ(info.local_size, 2);
}

TEST(Launcher, NoneAndGarbage) {
  g_env = {};
  EXPECT_EQ(detectLauncher(fakeEnv).size, -1);
  g_env = {{"OMPI_COMM_WORLD_SIZE", "two"}};
  EXPECT_EQ(detectLauncher(fakeEnv).launcher, "none");
}

TEST(World, WithoutALauncherAutoIsSelf) {
  if (detectLauncher().size > 1) GTEST_SKIP() << "running under a multi-rank launcher";
  World world("auto");
  EXPECT_EQ(world.comm().name(), "self");
  EXPECT_EQ(world.size(), 1);
  EXPECT_GE(world.defaultThreads(), 1);
  EXPECT_THROW(World("gloo"), InputError);
}

}  // namespace
}  // namespace lrfind::runtime
