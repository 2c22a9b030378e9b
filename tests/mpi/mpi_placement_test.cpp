// The GPU-sharing check across real ranks, without a GPU: the GPU's identity comes from
// a test hook (runtime::setGpuIdentityForTesting), as LibTorch would read it on a GPU
// machine. Ranks on one physical GPU are an agreed error; a GPU whose identity cannot be
// read is left out with a warning, never compared by its index (under srun
// --gpus-per-task=1 every rank is cuda:0 on a GPU of its own).

#include <string>

#include <c10/core/Device.h>
#include <gtest/gtest.h>

#include "comm/agreement.h"
#include "comm/mpi_communicator.h"
#include "common/error.h"
#include "runtime/placement.h"

namespace lrfind::runtime {
namespace {

const c10::Device kCuda0(c10::DeviceType::CUDA, 0);

class GpuSharing : public ::testing::Test {
 protected:
  void TearDown() override { setGpuIdentityForTesting(nullptr); }
  comm::MpiCommunicator comm_;
};

// Every rank on its own GPU, all of them cuda:0 in their process.
TEST_F(GpuSharing, OwnGpuPerRankIsFineThoughEveryIndexIsZero) {
  const int rank = comm_.rank();
  setGpuIdentityForTesting([rank](int) { return "GPU-0000000" + std::to_string(rank); });
  EXPECT_FALSE(checkGpuSharing(comm_, kCuda0, "cuda", false));
}

TEST_F(GpuSharing, TwoRanksOnOnePhysicalGpuIsAnAgreedInputError) {
  setGpuIdentityForTesting([](int) { return std::string("0000:3b:00.0"); });
  try {
    checkGpuSharing(comm_, kCuda0, "cuda", false);
    ADD_FAILURE() << "expected an error";
  } catch (const InputError& e) {
    EXPECT_TRUE(comm::isAgreed(e));
    EXPECT_NE(std::string(e.what()).find("ranks 0 and 1 would share"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("GPU 0000:3b:00.0"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(checkGpuSharing(comm_, kCuda0, "cuda", /*allowed=*/true));
}

// The false alarm of the issue: no identity must not fall back to "cuda:0" and call
// every rank's own GPU shared. The check is skipped for those ranks, with a warning
// on rank 0 that names them.
TEST_F(GpuSharing, UnknownIdentityIsSkippedWithAWarningNotCalledShared) {
  setGpuIdentityForTesting([](int) { return std::string(); });
  ::testing::internal::CaptureStderr();
  bool shared = true;
  EXPECT_NO_THROW(shared = checkGpuSharing(comm_, kCuda0, "cuda", false));
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_FALSE(shared);
  if (comm_.rank() == 0) {
    EXPECT_NE(err.find("warning: --device cuda: LibTorch reads neither the UUID nor the PCI bus id of the GPU of "
                       "rank(s) 0, 1"),
              std::string::npos)
        << err;
    EXPECT_NE(err.find("not checking whether they share"), std::string::npos) << err;
  } else {
    EXPECT_EQ(err, "");
  }
}

// Ranks on the CPU take no part in the comparison and cause no warning.
TEST_F(GpuSharing, CpuRanksAreNotCompared) {
  setGpuIdentityForTesting([](int) { return std::string(); });
  ::testing::internal::CaptureStderr();
  EXPECT_FALSE(checkGpuSharing(comm_, c10::Device(c10::DeviceType::CPU), "cpu", false));
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
}

}  // namespace
}  // namespace lrfind::runtime
