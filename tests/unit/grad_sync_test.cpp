#include "comm/grad_sync.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "common/error.h"
#include "comm/self_communicator.h"

namespace lrfind::comm {
namespace {

// A two-rank world simulated in one process: the other rank's gradients are `factor`
// times ours, so the average is (1 + factor) / 2 times ours. Counts allreduce calls.
class MirrorCommunicator final : public Communicator {
 public:
  explicit MirrorCommunicator(double factor) : factor_(factor) {}
  int rank() const override { return 0; }
  int size() const override { return 2; }
  std::string name() const override { return "mirror"; }
  void allreduce(at::Tensor& t, const AllreduceOptions&) override {
    ++calls;
    max_numel = std::max<int64_t>(max_numel, t.numel());
    t.mul_(1.0 + factor_);
  }
  void broadcast(at::Tensor&, const BroadcastOptions&) override {}
  void gather(const at::Tensor&, at::Tensor&, const GatherOptions&) override {}
  void barrier() override {}
  int calls = 0;
  int64_t max_numel = 0;

 private:
  double factor_;
};

std::vector<at::Tensor> makeParams(const std::vector<std::vector<int64_t>>& shapes) {
  std::vector<at::Tensor> params;
  int i = 0;
  for (const auto& s : shapes) {
    auto p = at::zeros(s, at::kFloat).set_requires_grad(true);
    p.mutable_grad() = at::arange(p.numel(), at::kFloat).reshape(s) + 1000 * i++;
    params.push_back(p);
  }
  return params;
}

void expectAveraged(const std::vector<at::Tensor>& params, double scale) {
  int i = 0;
  for (const auto& p : params) {
    auto expected = (at::arange(p.numel(), at::kFloat).reshape(p.sizes()) + 1000 * i++) * scale;
    EXPECT_TRUE(at::allclose(p.grad(), expected, 1e-6, 1e-6)) << "parameter " << i - 1;
  }
}

TEST(GradientAverager, BucketSmallerThanOneParameter) {
  MirrorCommunicator comm(3.0);  // average = 2x
  auto params = makeParams({{10, 10}, {7}});
  GradientAverager avg(comm, params, 16 * sizeof(float));  // 107 elements / 16 = 7 buckets
  EXPECT_EQ(avg.numBuckets(), 7u);
  avg.average();
  EXPECT_EQ(comm.calls, 7);
  EXPECT_LE(comm.max_numel, 16);
  expectAveraged(params, 2.0);
}

TEST(GradientAverager, BucketOfExactlyOneParameter) {
  MirrorCommunicator comm(0.0);  // average = 0.5x
  auto params = makeParams({{4, 4}, {4, 4}, {4, 4}});
  GradientAverager avg(comm, params, 16 * sizeof(float));
  EXPECT_EQ(avg.numBuckets(), 3u);
  avg.average();
  expectAveraged(params, 0.5);
}

TEST(GradientAverager, ManyParametersInOneBucket) {
  MirrorCommunicator comm(2.0);  // average = 1.5x
  auto params = makeParams({{3}, {5, 2}, {1}, {2, 2, 2}});
  GradientAverager avg(comm, params);
  EXPECT_EQ(avg.numBuckets(), 1u);
  avg.average();
  avg.average();  // buffers are reused: a second round scales again
  EXPECT_EQ(comm.calls, 2);
  expectAveraged(params, 2.25);
}

TEST(GradientAverager, GradientsBecomeViewsOfTheBucketsAndStayThere) {
  MirrorCommunicator comm(1.0);  // average = 1x
  auto params = makeParams({{6}, {2, 3}});
  GradientAverager avg(comm, params, 4 * sizeof(float));  // 12 elements, 3 buckets
  avg.average();
  const void* first = params[0].grad().data_ptr();
  const void* second = params[1].grad().data_ptr();
  // One flat buffer, the last parameter first (the order backward produces them in).
  EXPECT_EQ(static_cast<const float*>(first), static_cast<const float*>(second) + 6) << "one flat buffer";
  // What backward does: accumulate in place into the existing gradient.
  params[1].mutable_grad().add_(1.0);
  avg.average();
  EXPECT_EQ(params[1].grad().data_ptr(), second) << "no copy, no reallocation";
  EXPECT_TRUE(at::allclose(params[1].grad(), at::arange(6, at::kFloat).reshape({2, 3}) + 1001));
}

TEST(GradientAverager, PrescaledLossNeedsNoDivision) {
  MirrorCommunicator comm(1.0);  // the other rank's gradients equal ours: the sum is 2x
  auto params = makeParams({{5}});
  GradientAverager avg(comm, params, kDefaultBucketBytes, /*loss_prescaled=*/true);
  avg.average();
  expectAveraged(params, 2.0);
}

TEST(GradientAverager, MissingGradientsContributeZeros) {
  MirrorCommunicator comm(1.0);
  auto params = makeParams({{3}, {2}});
  params[1].mutable_grad() = at::Tensor();
  GradientAverager avg(comm, params);
  avg.average();
  ASSERT_TRUE(params[1].grad().defined());
  EXPECT_TRUE(at::equal(params[1].grad(), at::zeros({2})));
}

TEST(GradientAverager, WorldOfOneDoesNothing) {
  SelfCommunicator self;
  auto params = makeParams({{3}});
  GradientAverager avg(self, params);
  EXPECT_EQ(avg.numBuckets(), 0u);
  avg.average();
  expectAveraged(params, 1.0);
}

TEST(SelfCommunicator, GatherCopiesAndChecksSizes) {
  SelfCommunicator self;
  at::Tensor in = at::arange(3, at::kDouble);
  at::Tensor out = at::zeros({3}, at::kDouble);
  self.gather(in, out);
  EXPECT_TRUE(at::equal(in, out));
  at::Tensor small = at::zeros({2}, at::kDouble);
  EXPECT_THROW(self.gather(in, small), Error);
  at::Tensor t = at::ones({2});
  EXPECT_THROW(self.broadcast(t, BroadcastOptions{1}), Error);
}

}  // namespace
}  // namespace lrfind::comm
