#include "comm/grad_sync.h"

#include <algorithm>

#include <ATen/ATen.h>

#include "common/error.h"

namespace lrfind::comm {

GradientAverager::GradientAverager(Communicator& comm, std::vector<at::Tensor> params, std::size_t bucket_bytes,
                                   bool loss_prescaled)
    : comm_(comm), loss_prescaled_(loss_prescaled) {
  for (auto& p : params) {
    if (p.requires_grad()) params_.push_back(std::move(p));
  }
  if (comm_.size() == 1 || params_.empty()) return;
  const auto& first = params_.front();
  int64_t total = 0;
  for (const auto& p : params_) {
    LRFIND_CHECK(p.scalar_type() == first.scalar_type() && p.device() == first.device(),
                 "gradient averaging needs one dtype and device for all parameters");
    total += p.numel();
  }
  flat_ = at::zeros({total}, first.options().requires_grad(false));
  int64_t offset = 0;
  for (auto& p : params_) {
    views_.push_back(flat_.narrow(0, offset, p.numel()).view(p.sizes()));
    offset += p.numel();
  }
  const int64_t capacity =
      std::max<int64_t>(1, static_cast<int64_t>(bucket_bytes) / static_cast<int64_t>(first.element_size()));
  for (int64_t start = 0; start < total; start += capacity) {
    buckets_.push_back(flat_.narrow(0, start, std::min(capacity, total - start)));
  }
}

void GradientAverager::average() {
  if (comm_.size() == 1 || params_.empty()) return;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const at::Tensor& grad = params_[i].grad();
    if (grad.defined() && grad.data_ptr() == views_[i].data_ptr()) continue;  // backward wrote into the view
    if (grad.defined()) {
      views_[i].copy_(grad);
    } else {
      views_[i].zero_();
    }
    params_[i].mutable_grad() = views_[i];
  }
  for (auto& bucket : buckets_) comm_.allreduce(bucket);
  if (!loss_prescaled_) flat_.div_(static_cast<double>(comm_.size()));
  // Device backends return before the data moved; bound the wait here rather than let
  // the next step block forever on a collective that never finishes.
  comm_.synchronize();
}

}  // namespace lrfind::comm
