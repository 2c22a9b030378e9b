#include "comm/grad_sync.h"

#include <algorithm>

#include <ATen/ATen.h>

#include "comm/errors.h"

namespace lrfind::comm {

GradientAverager::GradientAverager(Communicator& comm, std::vector<at::Tensor> params,
                                   std::size_t bucket_bytes)
    : comm_(comm), params_(std::move(params)) {
  if (comm_.size() == 1 || params_.empty()) {
    return;
  }
  const auto options = params_.front().options();
  const auto elem_size = static_cast<int64_t>(params_.front().element_size());
  const int64_t capacity = std::max<int64_t>(1, static_cast<int64_t>(bucket_bytes) / elem_size);
  for (const auto& p : params_) {
    LRFIND_CHECK(p.scalar_type() == options.dtype().toScalarType() && p.device() == options.device(),
                 "gradient averaging needs one dtype and device for all parameters");
  }

  // Walk the concatenation of all parameters and cut it every `capacity` elements.
  Bucket current;
  int64_t filled = 0;
  auto close_bucket = [&] {
    current.buffer = at::empty({filled}, options);
    buckets_.push_back(std::move(current));
    current = Bucket{};
    filled = 0;
  };
  for (std::size_t i = 0; i < params_.size(); ++i) {
    int64_t offset = 0;
    const int64_t numel = params_[i].numel();
    while (offset < numel) {
      const int64_t take = std::min(numel - offset, capacity - filled);
      current.segments.push_back({i, offset, take, filled});
      offset += take;
      filled += take;
      if (filled == capacity) {
        close_bucket();
      }
    }
  }
  if (filled > 0) {
    close_bucket();
  }
}

void GradientAverager::average() {
  if (comm_.size() == 1) {
    return;
  }
  const double inv_world = 1.0 / comm_.size();
  for (auto& p : params_) {
    if (!p.grad().defined()) {
      p.mutable_grad() = at::zeros_like(p);
    }
  }
  for (auto& bucket : buckets_) {
    for (const auto& s : bucket.segments) {
      bucket.buffer.narrow(0, s.bucket_off, s.numel)
          .copy_(params_[s.param].grad().view({-1}).narrow(0, s.offset, s.numel));
    }
    comm_.allreduce(bucket.buffer);
    bucket.buffer.mul_(inv_world);
    for (const auto& s : bucket.segments) {
      params_[s.param].mutable_grad().view({-1}).narrow(0, s.offset, s.numel)
          .copy_(bucket.buffer.narrow(0, s.bucket_off, s.numel));
    }
  }
}

}  // namespace lrfind::comm
