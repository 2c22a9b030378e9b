// The NCCL backend on CUDA tensors, under mpirun (one GPU per rank). Every test skips,
// on every rank alike, with the reason, when this process cannot use a GPU: LibTorch
// without CUDA, no GPU that LibTorch sees, or more ranks on a node than GPUs. LibTorch
// decides, not our own CUDA runtime: the tensors under test are LibTorch's, and a
// runtime that sees no GPU must not turn a GPU machine's run into skips.
// LRFIND_NCCL_TEST_SHARE_GPU=1 runs them with more ranks than GPUs anyway, to learn
// whether NCCL accepts two ranks on one GPU (launch/gpu_check.sh asks it).

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include "comm/agreement.h"
#include "common/error.h"
#include "comm/grad_sync.h"
#include "comm/mpi_communicator.h"
#include "comm/nccl_communicator.h"
#include "lrfind/config.h"

#if LRFIND_TORCH_HAS_CUDA
#include <ATen/cuda/Sleep.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace lrfind::comm {
namespace {

// GPUs that LibTorch sees (0 when it was built without CUDA).
int libtorchGpus() { return static_cast<int>(torch::cuda::device_count()); }

// Why this job cannot run the NCCL tests ("" when it can), the same on every rank.
std::string skipReason(const MpiCommunicator& world) {
  std::string reason;
  const int gpus = libtorchGpus();
  if (!LRFIND_TORCH_HAS_CUDA) {
    reason = "LibTorch was built without CUDA, so there are no CUDA tensors to test with";
  } else if (gpus == 0) {
    reason = "LibTorch sees no CUDA GPU in this process";
  } else if (world.localSize() > gpus && std::getenv("LRFIND_NCCL_TEST_SHARE_GPU") == nullptr) {
    reason = concat(world.localSize(), " ranks on this node but ", gpus,
                    " GPU(s): NCCL needs one GPU per rank (run with fewer ranks)");
  }
  int mine = reason.empty() ? 1 : 0, all = 0;
  MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (all == 0 && reason.empty()) reason = "another rank cannot use a GPU";
  return reason;
}

class NcclTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    world_ = std::make_unique<MpiCommunicator>();
    skip_ = skipReason(*world_);
    if (!skip_.empty()) return;
    NcclOptions options;
    options.device = world_->localRank() % libtorchGpus();
    options.wait.timeout = std::chrono::seconds(60);
    nccl_ = std::make_unique<NcclCommunicator>(*world_, options);
  }
  static void TearDownTestSuite() {
    nccl_.reset();
    world_.reset();
  }
  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
  }

  static at::TensorOptions cuda(at::ScalarType dtype = at::kFloat) {
    return at::TensorOptions().dtype(dtype).device(at::kCUDA, nccl_->device());
  }

  static std::unique_ptr<MpiCommunicator> world_;
  static std::unique_ptr<NcclCommunicator> nccl_;
  static std::string skip_;
};

std::unique_ptr<MpiCommunicator> NcclTest::world_;
std::unique_ptr<NcclCommunicator> NcclTest::nccl_;
std::string NcclTest::skip_;

TEST_F(NcclTest, AllreduceSumMatchesHandComputedValues) {
  const int r = nccl_->rank(), w = nccl_->size();
  // Rank r holds i + 1000 r; the sum is w·i + 1000·w(w−1)/2.
  at::Tensor t = at::arange(1000, cuda()) + 1000.0 * r;
  nccl_->allreduce(t);
  nccl_->synchronize();
  const at::Tensor expected = at::arange(1000, at::kFloat) * w + 1000.0 * w * (w - 1) / 2;
  EXPECT_TRUE(at::equal(t.cpu(), expected));
}

TEST_F(NcclTest, AllreduceMinMaxAndIntegerTypes) {
  const int r = nccl_->rank(), w = nccl_->size();
  at::Tensor lo = at::full({7}, r + 1, cuda(at::kLong));
  at::Tensor hi = at::full({7}, r + 1, cuda(at::kDouble));
  nccl_->allreduce(lo, AllreduceOptions{ReduceOp::kMin});
  nccl_->allreduce(hi, AllreduceOptions{ReduceOp::kMax});
  nccl_->synchronize();
  EXPECT_TRUE(at::equal(lo.cpu(), at::full({7}, 1, at::kLong)));
  EXPECT_TRUE(at::equal(hi.cpu(), at::full({7}, w, at::kDouble)));
}

TEST_F(NcclTest, BroadcastFromLastRank) {
  const int r = nccl_->rank(), w = nccl_->size();
  at::Tensor t = at::full({3, 5}, static_cast<double>(r), cuda());
  nccl_->broadcast(t, BroadcastOptions{w - 1});
  nccl_->synchronize();
  EXPECT_TRUE(at::equal(t.cpu(), at::full({3, 5}, static_cast<double>(w - 1), at::kFloat)));
}

TEST_F(NcclTest, GatherPutsEachRankInItsSlot) {
  const int r = nccl_->rank(), w = nccl_->size();
  at::Tensor in = at::full({4}, static_cast<double>(10 * r + 1), cuda());
  at::Tensor out = r == 0 ? at::zeros({4 * w}, cuda()) : at::Tensor();
  nccl_->gather(in, out);
  nccl_->synchronize();
  if (r == 0) {
    const at::Tensor host = out.cpu();
    for (int k = 0; k < w; ++k) EXPECT_EQ(host[4 * k].item<float>(), 10 * k + 1) << "slot " << k;
  }
}

TEST_F(NcclTest, RejectsHostTensors) {
  at::Tensor t = at::ones({2});
  EXPECT_THROW(nccl_->allreduce(t), Error);
}

// The same error type as the MPI backend's, thrown on every rank before anything is
// enqueued, so the ranks stay in step.
TEST_F(NcclTest, UnsupportedDtypeAndReduceOpAreCommErrors) {
  at::Tensor flags = at::zeros({2}, cuda(at::kBool));
  EXPECT_THROW(nccl_->allreduce(flags), CommError);
  at::Tensor t = at::ones({2}, cuda());
  EXPECT_THROW(nccl_->allreduce(t, AllreduceOptions{static_cast<ReduceOp>(7)}), CommError);
  nccl_->synchronize();
  EXPECT_TRUE(at::equal(t.cpu(), at::ones({2})));
}

// The bucketed averager on the GPU: buckets smaller than one parameter.
TEST_F(NcclTest, GradientAveragerAveragesCudaGradients) {
  const int r = nccl_->rank(), w = nccl_->size();
  std::vector<at::Tensor> params{at::zeros({300}, cuda()).requires_grad_(), at::zeros({5, 7}, cuda()).requires_grad_()};
  GradientAverager averager(*nccl_, params, /*bucket_bytes=*/64 * 4);
  for (auto& p : params) p.mutable_grad() = at::full(p.sizes(), static_cast<double>(r + 1), cuda());
  averager.average();
  const double mean = (w + 1) / 2.0;
  for (auto& p : params) EXPECT_TRUE(at::allclose(p.grad().cpu(), at::full(p.sizes(), mean, at::kFloat)));
}

// Overlapped on the GPU: the hooks run on autograd's device thread and start each
// bucket on NCCL's communication stream during backward; the sums equal the blocking
// ones bit for bit, over several steps (the first-step rebuild included).
TEST_F(NcclTest, OverlappedAveragingEqualsBlockingBitForBit) {
  const int r = nccl_->rank();
  std::vector<at::Tensor> grads[2];
  std::size_t started_early = 0;
  for (const bool overlap : {false, true}) {
    at::manual_seed(5);
    at::Tensor w_in = at::randn({64, 32}, cuda()).requires_grad_(), w_out = at::randn({10, 64}, cuda()).requires_grad_();
    const at::Tensor x = at::randn({16, 32}, cuda()) + r;
    AveragingOptions options;
    options.bucket_bytes = options.first_bucket_bytes = 512 * 4;
    options.overlap = overlap;
    GradientAverager averager(*nccl_, {w_in, w_out}, options);
    EXPECT_EQ(averager.overlapping(), overlap && nccl_->size() > 1);
    for (int step = 0; step < 3; ++step) {
      averager.zeroGradients();
      averager.beginBackward(true);
      const at::Tensor hidden = at::tanh(at::matmul(x, w_in.t()));
      at::matmul(hidden, w_out.t()).pow(2).sum().backward();
      averager.launchRemaining();
      if (averager.overlapping()) {
        averager.finish();
        started_early = std::max(started_early, averager.bucketsStartedInBackward());
      } else {
        averager.average();
      }
      grads[overlap ? 1 : 0].push_back(w_in.grad().cpu());
      grads[overlap ? 1 : 0].push_back(w_out.grad().cpu());
    }
  }
  for (std::size_t i = 0; i < grads[0].size(); ++i) EXPECT_TRUE(at::equal(grads[0][i], grads[1][i])) << i;
  if (nccl_->size() > 1) {
    EXPECT_GT(started_early, 0u);  // w_out's buckets start before w_in's gradient
  }
}

#if LRFIND_TORCH_HAS_CUDA
// Work queued on the compute stream before a collective must be seen by it: fill the
// tensor at the end of a long chain of kernels on a side stream made current, and
// enqueue the allreduce right away, without any host synchronization in between.
TEST_F(NcclTest, CollectiveIsOrderedAfterWorkOnTheCurrentStream) {
  const int r = nccl_->rank(), w = nccl_->size();
  const auto device = static_cast<c10::DeviceIndex>(nccl_->device());
  at::cuda::CUDAStream side = c10::cuda::getStreamFromPool(false, device);
  c10::cuda::CUDAStreamGuard guard(side);
  at::Tensor big = at::rand({4096, 4096}, cuda());
  at::Tensor t = at::zeros({1 << 20}, cuda());
  for (int i = 0; i < 20; ++i) big = at::mm(big, big).div_(4096.0);  // ~ms of work ahead of the fill
  t.fill_(static_cast<double>(r + 1)).add_(big.sum().mul(0));
  nccl_->allreduce(t);
  nccl_->synchronize();
  EXPECT_EQ(t.min().item<float>(), w * (w + 1) / 2.0f);
  EXPECT_EQ(t.max().item<float>(), w * (w + 1) / 2.0f);
}
#else
TEST_F(NcclTest, CollectiveIsOrderedAfterWorkOnTheCurrentStream) {
  GTEST_SKIP() << "needs LibTorch with CUDA for its stream API";
}
#endif

// Several asynchronous allreduces under way at once, started in order and waited for in
// reverse, give the bits of the blocking allreduce of a copy of each input: sizes from one
// element to an odd 4 MiB, rounding-sensitive floats, half, and an integer max.
TEST_F(NcclTest, AsyncAllreducesEqualBlockingOnesBitForBit) {
  const int r = nccl_->rank(), w = nccl_->size();
  const auto wavy = [&](int64_t n, at::ScalarType dtype) {
    return (at::sin(at::arange(n, at::kDouble) * (1.3 + r)) * 1000.0).to(cuda(dtype));
  };
  const std::vector<at::Tensor> inputs{wavy(1, at::kFloat), wavy(1000, at::kFloat), wavy((1 << 20) + 3, at::kFloat),
                                       wavy(777, at::kDouble), wavy(4099, at::kHalf),
                                       at::arange(100, cuda(at::kLong)) * (r + 1)};
  const std::vector<AllreduceOptions> opts{{}, {}, {}, {}, {}, {ReduceOp::kMax}};
  std::vector<at::Tensor> async, blocking;
  for (const auto& input : inputs) {
    async.push_back(input.clone());
    blocking.push_back(input.clone());
  }
  std::vector<std::unique_ptr<Work>> works;
  for (std::size_t i = 0; i < async.size(); ++i) works.push_back(nccl_->allreduceAsync(async[i], opts[i]));
  for (auto it = works.rbegin(); it != works.rend(); ++it) (*it)->wait();
  for (std::size_t i = 0; i < blocking.size(); ++i) nccl_->allreduce(blocking[i], opts[i]);
  nccl_->synchronize();
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    EXPECT_TRUE(at::equal(async[i].cpu(), blocking[i].cpu()))
        << "input " << i << " (" << inputs[i].scalar_type() << ")";
  }
  EXPECT_TRUE(at::equal(async.back().cpu(), at::arange(100, at::kLong) * w));
}

// The same checks as allreduce(), before anything is enqueued.
TEST_F(NcclTest, AsyncRejectsWhatAllreduceRejects) {
  at::Tensor host = at::ones({2});
  EXPECT_THROW(nccl_->allreduceAsync(host), Error);
  at::Tensor flags = at::zeros({2}, cuda(at::kBool));
  EXPECT_THROW(nccl_->allreduceAsync(flags), CommError);
  at::Tensor t = at::ones({2}, cuda());
  EXPECT_THROW(nccl_->allreduceAsync(t, AllreduceOptions{static_cast<ReduceOp>(7)}), CommError);
  nccl_->synchronize();
  EXPECT_TRUE(at::equal(t.cpu(), at::ones({2})));
}

// test() never blocks, and turns true by itself, without wait(). The poll is bounded.
TEST_F(NcclTest, AsyncTestTurnsTrueOnceTheAllreduceIsDone) {
  const int r = nccl_->rank(), w = nccl_->size();
  at::Tensor t = at::full({4096}, static_cast<double>(r + 1), cuda());
  const std::unique_ptr<Work> work = nccl_->allreduceAsync(t);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  bool done = work->test();
  while (!done && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    done = work->test();
  }
  ASSERT_TRUE(done) << "test() still false after 30 s";
  EXPECT_TRUE(work->test());
  work->wait();
  EXPECT_TRUE(at::equal(t.cpu(), at::full({4096}, w * (w + 1) / 2.0, at::kFloat)));
}

// Started and polled on a thread that never set a device (as autograd's device thread
// may not have), waited for on this one: the gradient averager's pattern.
TEST_F(NcclTest, AsyncStartedOnAnotherThreadIsWaitedForOnThisOne) {
  const int r = nccl_->rank(), w = nccl_->size();
  at::Tensor t = at::full({1000}, static_cast<double>(r + 1), cuda());
  std::unique_ptr<Work> work;
  std::string error;
  std::thread starter([&] {
    try {
      work = nccl_->allreduceAsync(t);
      work->test();
    } catch (const std::exception& e) {
      error = e.what();
    }
  });
  starter.join();
  ASSERT_EQ(error, "");
  ASSERT_NE(work, nullptr);
  work->wait();
  nccl_->synchronize();
  EXPECT_TRUE(at::equal(t.cpu(), at::full({1000}, w * (w + 1) / 2.0, at::kFloat)));
}

// A Work dropped unfinished does not crash, and synchronize() still covers its allreduce.
TEST_F(NcclTest, AbandonedAsyncAllreduceIsStillSynchronized) {
  const int r = nccl_->rank(), w = nccl_->size();
  at::Tensor t = at::full({1 << 16}, static_cast<double>(r + 1), cuda());
  nccl_->allreduceAsync(t).reset();
  nccl_->synchronize();
  EXPECT_TRUE(at::equal(t.cpu(), at::full({1 << 16}, w * (w + 1) / 2.0, at::kFloat)));
}

#if LRFIND_TORCH_HAS_CUDA
// The comm stream follows the current stream, and after wait() the current stream follows
// the comm stream: a fill queued behind ~0.1 s of spinning on the current stream is in the
// sum, a read queued after wait() sees the sum, and a write queued after wait() is not
// overwritten by the allreduce. (At np 1 the sum is the fill itself: only np 2 can catch a
// missing order.)
TEST_F(NcclTest, AsyncAllreduceIsOrderedWithTheCurrentStream) {
  const int r = nccl_->rank(), w = nccl_->size();
  const auto device = static_cast<c10::DeviceIndex>(nccl_->device());
  at::cuda::CUDAStream compute = c10::cuda::getStreamFromPool(false, device);
  c10::cuda::CUDAStreamGuard guard(compute);
  at::Tensor t = at::zeros({1 << 20}, cuda());
  at::cuda::sleep(200'000'000);  // GPU clock cycles
  t.fill_(static_cast<double>(r + 1));
  const std::unique_ptr<Work> work = nccl_->allreduceAsync(t);
  work->wait();
  const at::Tensor seen = t.clone();
  t.fill_(-1.0);
  nccl_->synchronize();
  const float sum = w * (w + 1) / 2.0f;
  EXPECT_EQ(seen.min().item<float>(), sum);
  EXPECT_EQ(seen.max().item<float>(), sum);
  EXPECT_TRUE(at::equal(t.cpu(), at::full({1 << 20}, -1.0, at::kFloat)));
}
#else
TEST_F(NcclTest, AsyncAllreduceIsOrderedWithTheCurrentStream) {
  GTEST_SKIP() << "needs LibTorch with CUDA for its stream API";
}
#endif

// A collective that a peer never joins ends with a CommError after the timeout, not a
// hang. Rank 1 waits; rank 0 never calls. The 3 s bound the collective only: joining
// (seconds on 8 GPUs) has its own deadline, here the default 60 s.
TEST_F(NcclTest, MissingPeerTimesOutWithAnError) {
  if (nccl_->size() < 2) GTEST_SKIP() << "needs two ranks";
  NcclOptions options;
  options.device = nccl_->device();
  options.wait.timeout = std::chrono::seconds(3);
  ASSERT_EQ(initTimeout(options), std::chrono::seconds(60));
  NcclCommunicator short_fuse(*world_, options);
  if (short_fuse.rank() == 1) {
    at::Tensor t = at::ones({16}, cuda());
    const auto t0 = std::chrono::steady_clock::now();
    try {
      short_fuse.allreduce(t);
      short_fuse.synchronize();
      ADD_FAILURE() << "expected a timeout";
    } catch (const CommError& e) {
      EXPECT_NE(std::string(e.what()).find("did not answer within 3 s"), std::string::npos) << e.what();
      // Named as the library knows it; lrfind_dist passes its flag instead.
      EXPECT_NE(std::string(e.what()).find("(WaitPolicy::timeout)"), std::string::npos) << e.what();
    }
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(30));
  }
  world_->barrier();
}

// The tests below need no GPU: they run, and must pass, on CPU machines too.

// Joining has a deadline of its own: twice the collective timeout, at least 60 s, or
// what the caller sets.
TEST(NcclOptionsTest, JoiningDeadlineRule) {
  NcclOptions options;
  options.wait.timeout = std::chrono::seconds(300);
  EXPECT_EQ(initTimeout(options), std::chrono::seconds(600));
  options.wait.timeout = std::chrono::seconds(3);
  EXPECT_EQ(initTimeout(options), std::chrono::seconds(60));
  options.init_timeout = std::chrono::seconds(5);
  EXPECT_EQ(initTimeout(options), std::chrono::seconds(5));
}

// Header and library of two different NCCL installs: one clear error naming both.
TEST(NcclVersion, MismatchNamesBothVersionsAndTheLibrary) {
  EXPECT_EQ(ncclVersionMismatch(22809, 22809, "/x/libnccl.so.2"), "");
  const std::string text = ncclVersionMismatch(22809, 22703, "/usr/local/cuda/lib64/libnccl.so.2");
  EXPECT_NE(text.find("NCCL 2.27.3 loaded from /usr/local/cuda/lib64/libnccl.so.2"), std::string::npos) << text;
  EXPECT_NE(text.find("not the NCCL 2.28.9 whose nccl.h"), std::string::npos) << text;
  EXPECT_NE(text.find("NCCL_HOME"), std::string::npos) << text;
  // Before 2.9 the code was X*1000 + Y*100 + Z.
  EXPECT_NE(ncclVersionMismatch(2804, 22809, "l").find("not the NCCL 2.8.4 "), std::string::npos);
}

// This build runs with the NCCL whose header it was compiled with.
TEST(NcclVersion, LibraryInThisProcessMatchesTheHeader) {
  EXPECT_EQ(ncclRuntimeVersion(), LRFIND_NCCL_VERSION);
}

// A rank that cannot set its device (here the last rank asks for cuda:1000) ends every
// rank with the same agreed error before anyone waits in NCCL. Without a GPU every rank
// fails, and rank 0's error is the agreed one.
TEST(NcclSetup, DeviceFailureOnOneRankEndsEveryRankWithOneError) {
  MpiCommunicator world;
  const int gpus = static_cast<int>(torch::cuda::device_count());
  const int bad = world.size() - 1;
  NcclOptions options;
  options.device = world.rank() == bad ? 1000 : world.localRank() % std::max(gpus, 1);
  options.wait.timeout = std::chrono::seconds(20);
  const auto t0 = std::chrono::steady_clock::now();
  try {
    NcclCommunicator nccl(world, options);
    ADD_FAILURE() << "rank " << world.rank() << ": expected a failure";
  } catch (const Error& e) {
    const std::string text = e.what();
    EXPECT_EQ(isAgreed(e), world.size() > 1) << text;
    const int failing = gpus > 0 ? bad : 0;
    if (world.size() > 1) {
      EXPECT_EQ(text.rfind(concat("rank ", failing, ": "), 0), 0u) << text;
    }
    EXPECT_NE(text.find(concat("setting the device cuda:", failing == bad ? 1000 : 0, " failed on rank ", failing)),
              std::string::npos)
        << text;
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(15));
  world.barrier();
}

}  // namespace
}  // namespace lrfind::comm
