// The MPI backend against hand-computed results, at whatever world size mpirun gives.

#include <mpi.h>

#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "common/error.h"
#include "comm/grad_sync.h"
#include "comm/mpi_communicator.h"

namespace lrfind::comm {
namespace {

class MpiComm : public ::testing::Test {
 protected:
  MpiCommunicator comm;
  int r = comm.rank();
  int w = comm.size();
};

// Runs `call`, which must throw a CommError whose message contains `needle`.
template <typename Call>
void expectCommError(Call&& call, const std::string& needle) {
  try {
    call();
    ADD_FAILURE() << "expected a CommError naming " << needle;
  } catch (const CommError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST_F(MpiComm, AllreduceSumMinMaxByHand) {
  at::Tensor f = at::full({5}, static_cast<float>(r + 1));
  comm.allreduce(f);
  EXPECT_TRUE(at::equal(f, at::full({5}, w * (w + 1) / 2.0f)));  // 1 + 2 + … + W
  at::Tensor d = at::arange(3, at::kDouble) + r;
  comm.allreduce(d, AllreduceOptions{ReduceOp::kMax});
  EXPECT_TRUE(at::equal(d, at::arange(3, at::kDouble) + (w - 1)));
  at::Tensor l = at::full({2}, static_cast<int64_t>(10 - r), at::kLong);
  comm.allreduce(l, AllreduceOptions{ReduceOp::kMin});
  EXPECT_EQ(l[1].item<int64_t>(), 10 - (w - 1));
}

// Past 256 KiB the allreduce is a ring (reduce-scatter, allgather) instead of recursive
// doubling: by hand again, on a length that W does not divide, and the same bits on
// every rank.
TEST_F(MpiComm, LargeAllreduceByHandAndTheSameBitsEverywhere) {
  const int64_t n = 100003;  // 400 KB of float32
  at::Tensor f = at::arange(n, at::kFloat) * 1e-3f + static_cast<float>(r);
  comm.allreduce(f);
  const at::Tensor expected = at::arange(n, at::kFloat) * 1e-3f * static_cast<float>(w) + w * (w - 1) / 2.0f;
  EXPECT_TRUE(at::allclose(f, expected, 1e-5, 1e-3));
  at::Tensor first = f.clone();
  comm.broadcast(first);
  EXPECT_TRUE(at::equal(f, first)) << "rank " << r << " holds other bits than rank 0";
  at::Tensor m = at::full({n}, static_cast<double>(r), at::kDouble);
  m[n - 1] = -static_cast<double>(r);
  comm.allreduce(m, AllreduceOptions{ReduceOp::kMax});
  EXPECT_EQ(m[0].item<double>(), w - 1);
  EXPECT_EQ(m[n - 1].item<double>(), 0.0);
}

// Asynchronous allreduces, several under way at once (small ones by recursive doubling,
// large ones by the ring), advanced with test() in a different order on every rank:
// each ends with the bits of the blocking allreduce of the same input.
TEST_F(MpiComm, AsyncAllreducesUnderWayTogetherEqualTheBlockingOnesBitForBit) {
  const std::vector<int64_t> sizes{7, 100003, 1, 65536, 300000, 33};
  std::vector<at::Tensor> async, blocking;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    at::manual_seed(static_cast<uint64_t>(1000 * r + static_cast<int>(i)));
    async.push_back(at::randn({sizes[i]}));
    blocking.push_back(async.back().clone());
  }
  for (auto& t : blocking) comm.allreduce(t);
  std::vector<std::unique_ptr<Work>> works;
  for (auto& t : async) works.push_back(comm.allreduceAsync(t));
  // Rank r polls starting at a different work, and waits for the last one.
  std::size_t pending = works.size();
  std::vector<bool> done(works.size(), false);
  for (int round = 0; pending > 1 && round < 1000000; ++round) {
    const std::size_t i = (static_cast<std::size_t>(r) + static_cast<std::size_t>(round)) % works.size();
    if (!done[i] && works[i]->test()) {
      done[i] = true;
      --pending;
    }
  }
  for (std::size_t i = 0; i < works.size(); ++i) {
    if (!done[i]) works[i]->wait();
    EXPECT_TRUE(works[i]->test()) << "work " << i;
    EXPECT_TRUE(at::equal(async[i], blocking[i])) << "work " << i << " (" << sizes[i] << " elements)";
  }
  // The communicator goes on as before.
  at::Tensor t = at::full({3}, static_cast<float>(r + 1));
  comm.allreduce(t);
  EXPECT_TRUE(at::equal(t, at::full({3}, w * (w + 1) / 2.0f)));
}

// An unsupported dtype or op fails when the work is asked for, on every rank alike.
TEST_F(MpiComm, AsyncAllreduceChecksBeforeItStarts) {
  at::Tensor half = at::zeros({2}, at::kHalf);
  expectCommError([&] { comm.allreduceAsync(half); }, "Half");
  at::Tensor t = at::ones({2});
  expectCommError([&] { comm.allreduceAsync(t, AllreduceOptions{static_cast<ReduceOp>(9)}); }, "reduce op 9");
  comm.allreduceAsync(t)->wait();
  EXPECT_TRUE(at::equal(t, at::full({2}, static_cast<float>(w))));
}

TEST_F(MpiComm, BroadcastFromEveryRoot) {
  for (int root = 0; root < w; ++root) {
    at::Tensor t = at::full({4}, static_cast<double>(r == root ? 100 + root : -1), at::kDouble);
    comm.broadcast(t, BroadcastOptions{root});
    EXPECT_TRUE(at::equal(t, at::full({4}, 100.0 + root, at::kDouble))) << "root " << root;
  }
}

TEST_F(MpiComm, GatherPutsRankRAtItsSlot) {
  at::Tensor in = at::full({3}, static_cast<double>(r), at::kDouble);
  at::Tensor out = r == 0 ? at::zeros({3 * w}, at::kDouble) : at::Tensor();
  comm.gather(in, out);
  if (r == 0) {
    for (int k = 0; k < w; ++k) EXPECT_EQ(out[3 * k + 2].item<double>(), k);
  }
}

TEST_F(MpiComm, ErrorsNameTheProblem) {
  at::Tensor half = at::zeros({2}, at::kHalf);
  EXPECT_THROW(comm.allreduce(half), CommError);
  at::Tensor t = at::zeros({2});
  EXPECT_THROW(comm.broadcast(t, BroadcastOptions{w}), Error);
  comm.barrier();
}

// Every collective refuses a dtype MPI cannot carry with a CommError (as NCCL does),
// on every rank, before any rank communicates: the barrier after it still pairs up.
TEST_F(MpiComm, UnsupportedDtypeIsACommErrorOnEveryCollective) {
  at::Tensor half = at::zeros({2}, at::kHalf);
  at::Tensor flags = at::zeros({3}, at::kBool);
  at::Tensor out = r == 0 ? at::zeros({3 * w}, at::kBool) : at::Tensor();
  expectCommError([&] { comm.allreduce(half); }, "Half");
  expectCommError([&] { comm.broadcast(half); }, "Half");
  expectCommError([&] { comm.gather(flags, out); }, "Bool");
  comm.barrier();
}

// An op outside the enum (any int converts to ReduceOp) is an error, not a sum, and
// leaves the tensor alone; the communicator stays usable.
TEST_F(MpiComm, ReduceOpOutsideTheEnumIsACommError) {
  at::Tensor t = at::full({3}, static_cast<float>(r + 1));
  expectCommError([&] { comm.allreduce(t, AllreduceOptions{static_cast<ReduceOp>(7)}); }, "reduce op 7");
  EXPECT_TRUE(at::equal(t, at::full({3}, static_cast<float>(r + 1))));
  expectCommError([&] { comm.allreduce(t, AllreduceOptions{static_cast<ReduceOp>(-1)}); }, "reduce op -1");
  comm.allreduce(t, AllreduceOptions{ReduceOp::kMax});
  EXPECT_TRUE(at::equal(t, at::full({3}, static_cast<float>(w))));
}

// A failed construction is a CommError naming the call, on every rank, not an abort.
// (That the communicators made before a failure are freed is by construction: each is
// owned by an RAII handle from the moment MPI returns it.)
TEST_F(MpiComm, FailedConstructionIsACommError) {
  // Errors on an invalid communicator go to WORLD's or (MPI 4) SELF's handler.
  ASSERT_EQ(MPI_Comm_set_errhandler(MPI_COMM_SELF, MPI_ERRORS_RETURN), MPI_SUCCESS);
  MPI_Comm null = MPI_COMM_NULL;
  expectCommError([&] { MpiCommunicator broken(&null); }, "MPI_Comm_dup");
  comm.barrier();
}

// Rank r's gradients are (r+1)·g, so the average is g·(W+1)/2, by hand.
void checkAveraging(MpiCommunicator& comm, const std::vector<std::vector<int64_t>>& shapes, std::size_t bucket_bytes,
                    std::size_t expected_buckets) {
  const int r = comm.rank(), w = comm.size();
  std::vector<at::Tensor> params, base;
  for (std::size_t i = 0; i < shapes.size(); ++i) {
    auto p = at::zeros(shapes[i]).set_requires_grad(true);
    auto g = at::arange(p.numel(), at::kFloat).reshape(shapes[i]) * 0.5 + 10.0 * static_cast<double>(i);
    base.push_back(g);
    p.mutable_grad() = g * static_cast<double>(r + 1);
    params.push_back(p);
  }
  GradientAverager avg(comm, params, bucket_bytes);
  EXPECT_EQ(avg.numBuckets(), expected_buckets);
  avg.average();
  for (std::size_t i = 0; i < params.size(); ++i) {
    EXPECT_TRUE(at::allclose(params[i].grad(), base[i] * ((w + 1) / 2.0), 1e-6, 1e-6)) << "parameter " << i;
  }
}

AveragingOptions averagingOptions(std::size_t bucket_bytes, bool overlap, bool shared_memory, bool rebuild = true) {
  AveragingOptions o;
  o.bucket_bytes = o.first_bucket_bytes = bucket_bytes;
  o.overlap = overlap;
  o.shared_memory = shared_memory;
  o.rebuild_order = rebuild;
  return o;
}

// Steps of y = w_out · tanh(w_in · x) by hand, the way the sweep drives the averager.
// The averager gets {w_in, w_out}, or {w_out, w_in} with `out_first` (registration
// order opposite to use).
struct HandSteps {
  std::vector<std::vector<at::Tensor>> grads;  // [step] {w_in, w_out}: averaged
  std::vector<std::size_t> started_early;      // [step], overlapped
  std::vector<std::vector<std::size_t>> layouts;
  bool rebuilt = false;
  std::string transport;
};
HandSteps handSteps(MpiCommunicator& comm, const AveragingOptions& options, bool out_first, int steps) {
  at::manual_seed(3);
  const at::Tensor w_in = at::randn({16, 8}), w_out = at::randn({4, 16});
  const at::Tensor x = at::randn({5, 8}) + comm.rank();
  at::Tensor p_in = w_in.clone().set_requires_grad(true), p_out = w_out.clone().set_requires_grad(true);
  GradientAverager avg(comm, out_first ? std::vector<at::Tensor>{p_out, p_in} : std::vector<at::Tensor>{p_in, p_out},
                       options);
  HandSteps out;
  out.transport = avg.transport();
  for (int step = 0; step < steps; ++step) {
    avg.zeroGradients();
    out.layouts.push_back(avg.layoutOrder());
    avg.beginBackward(true);
    // In two statements: autograd runs the later-made nodes first, so w_out's gradient
    // comes before w_in's only if w_out.t() is made after the hidden layer.
    const at::Tensor hidden = at::tanh(at::matmul(x, p_in.t()));
    at::matmul(hidden, p_out.t()).pow(2).sum().backward();
    if (avg.overlapping()) {
      avg.launchRemaining();
      avg.finish();
      out.started_early.push_back(avg.bucketsStartedInBackward());
    } else {
      avg.average();
    }
    out.grads.push_back({p_in.grad().clone(), p_out.grad().clone()});
  }
  out.rebuilt = avg.layoutRebuilt();
  return out;
}

void expectSameGrads(const HandSteps& a, const HandSteps& b, const std::string& what) {
  ASSERT_EQ(a.grads.size(), b.grads.size());
  for (std::size_t k = 0; k < a.grads.size(); ++k) {
    for (std::size_t i = 0; i < a.grads[k].size(); ++i) {
      EXPECT_TRUE(at::equal(a.grads[k][i], b.grads[k][i])) << what << ", step " << k << ", parameter " << i;
    }
  }
}

// Overlapped: the hooks start a bucket during backward as soon as its gradients are in
// (here w_out's, which backward produces first, while w_in's is still to come), and the
// result is the blocking one's, bit for bit, over MPI messages and over shared memory.
TEST_F(MpiComm, OverlappedAveragingStartsBucketsDuringBackward) {
  for (const bool shm : {false, true}) {
    const HandSteps blocking = handSteps(comm, averagingOptions(40 * sizeof(float), false, shm), false, 2);
    const HandSteps overlapped = handSteps(comm, averagingOptions(40 * sizeof(float), true, shm), false, 2);
    expectSameGrads(blocking, overlapped, shm ? "shared memory" : "messages");
    if (w == 1) continue;
    // The buffer holds w_out (64 elements) then w_in: bucket 0 is w_out's alone.
    EXPECT_EQ(overlapped.started_early, (std::vector<std::size_t>{1, 1}));
    EXPECT_FALSE(overlapped.rebuilt);  // registration order was backward's order already
  }
}

// Parameters registered in the order opposite to their use: the initial layout puts
// w_in's gradient (the last to arrive) in the first bucket, so no bucket can start
// before backward ends. After the first step the layout follows the observed order and
// buckets start early, with the same sums as without the rebuild.
TEST_F(MpiComm, OverlappedAveragingRebuildsTheBucketOrderFromTheFirstStep) {
  if (w == 1) GTEST_SKIP() << "a world of one does not average";
  for (const bool shm : {false, true}) {
    const HandSteps rebuilt = handSteps(comm, averagingOptions(40 * sizeof(float), true, shm), true, 3);
    const HandSteps kept = handSteps(comm, averagingOptions(40 * sizeof(float), true, shm, false), true, 3);
    EXPECT_TRUE(rebuilt.rebuilt);
    EXPECT_FALSE(kept.rebuilt);
    // Given {w_out, w_in}: first reversed (w_in first), then as observed (w_out first).
    EXPECT_EQ(rebuilt.layouts[0], (std::vector<std::size_t>{1, 0}));
    EXPECT_EQ(rebuilt.layouts[1], (std::vector<std::size_t>{0, 1}));
    EXPECT_EQ(rebuilt.started_early, (std::vector<std::size_t>{0, 1, 1}));
    EXPECT_EQ(kept.started_early, (std::vector<std::size_t>{0, 0, 0}));
    // Shared memory sums every element in rank order, whatever the layout; over messages
    // two ranks add a + b either way. (A ring of 3 sums in an order that follows the
    // layout.)
    if (shm || w == 2) expectSameGrads(rebuilt, kept, shm ? "shared memory" : "messages");
  }
}

// A tensor listed twice (tied weights) has one gradient: it is averaged once, overlapped
// or not.
TEST_F(MpiComm, ParameterListedTwiceIsAveragedOnce) {
  for (const bool overlap : {false, true}) {
    at::Tensor p = at::ones({100}).set_requires_grad(true), q = at::ones({50}).set_requires_grad(true);
    GradientAverager avg(comm, {p, q, p}, averagingOptions(64, overlap, true));
    avg.zeroGradients();
    avg.beginBackward(true);
    ((p * (r + 1)).sum() + (q * (r + 1)).sum()).backward();
    if (avg.overlapping()) {
      avg.launchRemaining();
      avg.finish();
    } else {
      avg.average();
    }
    const double mean = (w + 1) / 2.0;
    EXPECT_TRUE(at::equal(p.grad(), at::full({100}, mean))) << "overlap " << overlap;
    EXPECT_TRUE(at::equal(q.grad(), at::full({50}, mean))) << "overlap " << overlap;
  }
}

// Shared memory: every rank of this test is on this node, so the buffer is mapped by
// all; the sums equal those over MPI messages.
TEST_F(MpiComm, SharedMemoryAveragingIsUsedOnOneNodeAndEqualsMessages) {
  if (w == 1) GTEST_SKIP() << "a world of one does not average";
  const HandSteps shm = handSteps(comm, averagingOptions(64, false, true), false, 2);
  const HandSteps messages = handSteps(comm, averagingOptions(64, false, false), false, 2);
  EXPECT_EQ(shm.transport, "shared memory");
  EXPECT_EQ(messages.transport, "mpi");
  for (std::size_t k = 0; k < shm.grads.size(); ++k) {
    for (std::size_t i = 0; i < 2; ++i) {
      EXPECT_TRUE(at::allclose(shm.grads[k][i], messages.grads[k][i], 1e-6, 1e-6)) << "step " << k << ", parameter " << i;
    }
  }
}

// A segment that cannot be made (far larger than /dev/shm) is no buffer on every rank,
// with the reason; the averager then goes over MPI messages and says why.
TEST_F(MpiComm, SharedMemoryThatCannotBeMadeIsRefusedOnEveryRankWithTheReason) {
  if (w == 1) GTEST_SKIP() << "a world of one does not average";
  std::string why;
  EXPECT_EQ(comm.sharedBuffer(int64_t{1} << 50, at::kFloat, &why), nullptr);
  EXPECT_NE(why.find(r == 0 ? "posix_fallocate" : "rank 0 could not create it"), std::string::npos) << why;
  // The communicator still works, and the next segment can be made.
  EXPECT_NE(comm.sharedBuffer(16, at::kFloat, &why), nullptr) << why;
  EXPECT_EQ(comm.sharedBuffer(16, at::kLong, &why), nullptr);
  EXPECT_NE(why.find("float32/64 only"), std::string::npos) << why;
}

// Rank groups (a tuning grid's): even and odd ranks, each group reducing on its own,
// numbered by key, named by where its ranks run, with the parent's wait policy.
TEST_F(MpiComm, SplitMakesIndependentGroups) {
  std::vector<std::string> names;
  for (int i = 0; i < w; ++i) names.push_back(concat("host", i, ", pid ", 100 + i));
  comm.setPeerNames(names);
  WaitPolicy policy;
  policy.timeout = std::chrono::seconds(42);
  comm.setWaitPolicy(policy);
  // Reverse order within a group: key = -rank.
  const auto group = comm.split(r % 2, -r);
  const int size = (w - r % 2 + 1) / 2;  // ranks with the same parity
  ASSERT_EQ(group->size(), size);
  EXPECT_EQ(group->rank(), size - 1 - r / 2);
  EXPECT_EQ(group->waitPolicy().timeout, std::chrono::milliseconds(42000));
  // Group rank g is parent rank: the largest of this parity minus 2g.
  const int top = r % 2 + 2 * (size - 1);
  ASSERT_EQ(group->peerNames().size(), static_cast<std::size_t>(size));
  for (int g = 0; g < size; ++g) EXPECT_EQ(group->peerNames()[static_cast<std::size_t>(g)], names[static_cast<std::size_t>(top - 2 * g)]);
  at::Tensor t = at::full({3}, static_cast<double>(r + 1), at::kDouble);
  group->allreduce(t);
  double expected = 0;
  for (int q = r % 2; q < w; q += 2) expected += q + 1;
  EXPECT_TRUE(at::equal(t, at::full({3}, expected, at::kDouble)));
  comm.barrier();  // the parent still works, and the groups did not meet each other
  EXPECT_THROW(comm.split(-1, 0), Error);
}

TEST_F(MpiComm, GradientAveragingBucketsSmallerThanAParameter) {
  checkAveraging(comm, {{10, 10}, {7}}, 16 * sizeof(float), 7);
}

TEST_F(MpiComm, GradientAveragingOneParameterPerBucket) {
  checkAveraging(comm, {{4, 4}, {4, 4}, {4, 4}}, 16 * sizeof(float), 3);
}

TEST_F(MpiComm, GradientAveragingManyParametersInOneBucket) {
  checkAveraging(comm, {{3}, {5, 2}, {1}, {2, 2, 2}, {64, 32}}, 25u << 20, 1);
}

}  // namespace
}  // namespace lrfind::comm
