#include "comm/grad_sync.h"

#include <algorithm>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/utils/lambda_post_hook.h>
#include <torch/csrc/autograd/variable.h>

#include "common/error.h"

namespace lrfind::comm {

GradientAverager::GradientAverager(Communicator& comm, std::vector<at::Tensor> params, std::size_t bucket_bytes,
                                   bool loss_prescaled, bool overlap)
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
  // The last parameter first: backward produces gradients roughly from the output back.
  views_.resize(params_.size());
  std::vector<int64_t> offsets(params_.size());
  int64_t offset = 0;
  for (std::size_t j = params_.size(); j-- > 0;) {
    offsets[j] = offset;
    views_[j] = flat_.narrow(0, offset, params_[j].numel()).view(params_[j].sizes());
    offset += params_[j].numel();
  }
  const int64_t capacity =
      std::max<int64_t>(1, static_cast<int64_t>(bucket_bytes) / static_cast<int64_t>(first.element_size()));
  for (int64_t start = 0; start < total; start += capacity) {
    buckets_.push_back(flat_.narrow(0, start, std::min(capacity, total - start)));
  }
  // The hooks run on the thread that calls backward only for CPU tensors; CUDA's
  // autograd runs them on a device thread, and the NCCL path has no overlap yet.
  overlap_ = overlap && first.device().is_cpu();
  if (!overlap_) return;
  param_buckets_.resize(params_.size());
  params_per_bucket_.assign(buckets_.size(), 0);
  for (std::size_t j = 0; j < params_.size(); ++j) {
    const int64_t begin = offsets[j], end = begin + params_[j].numel();
    for (int64_t b = begin / capacity; b * capacity < end; ++b) {
      param_buckets_[j].push_back(static_cast<std::size_t>(b));
      ++params_per_bucket_[static_cast<std::size_t>(b)];
    }
  }
  for (std::size_t j = 0; j < params_.size(); ++j) {
    auto accumulator = torch::autograd::impl::grad_accumulator(params_[j]);
    LRFIND_CHECK(accumulator != nullptr, "parameter ", j, " has no gradient accumulator (not a leaf?)");
    hook_keys_.push_back(accumulator->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
        [this, j](const torch::autograd::variable_list& outputs, const torch::autograd::variable_list&) {
          onGradientReady(j);
          return outputs;
        })));
    accumulators_.push_back(std::move(accumulator));
  }
  resetStep();
}

GradientAverager::~GradientAverager() {
  for (std::size_t j = 0; j < accumulators_.size(); ++j) accumulators_[j]->del_post_hook(hook_keys_[j]);
}

void GradientAverager::adopt(std::size_t i) {
  const at::Tensor& grad = params_[i].grad();
  if (grad.defined() && grad.data_ptr() == views_[i].data_ptr()) return;  // backward wrote into the view
  if (grad.defined()) {
    views_[i].copy_(grad);
  } else {
    views_[i].zero_();
  }
  params_[i].mutable_grad() = views_[i];
}

void GradientAverager::average() {
  if (comm_.size() == 1 || params_.empty()) return;
  for (std::size_t i = 0; i < params_.size(); ++i) adopt(i);
  for (auto& bucket : buckets_) comm_.allreduce(bucket);
  if (!loss_prescaled_) flat_.div_(static_cast<double>(comm_.size()));
  // Device backends return before the data moved; bound the wait here rather than let
  // the next step block forever on a collective that never finishes.
  comm_.synchronize();
}

void GradientAverager::resetStep() {
  waiting_ = params_per_bucket_;
  ready_.assign(params_.size(), 0);
  works_.clear();
  works_.resize(buckets_.size());
  next_launch_ = 0;
  armed_ = false;
}

void GradientAverager::beginBackward(bool last) {
  if (overlap_) armed_ = last;
}

void GradientAverager::onGradientReady(std::size_t i) {
  if (!armed_ || ready_[i] != 0) return;
  adopt(i);
  ready_[i] = 1;
  for (const std::size_t b : param_buckets_[i]) --waiting_[b];
  launchReadyInOrder();
  // Let the allreduces under way move on while backward computes the next layers.
  for (std::size_t b = 0; b < next_launch_; ++b) works_[b]->test();
}

void GradientAverager::launchReadyInOrder() {
  while (next_launch_ < buckets_.size() && waiting_[next_launch_] == 0) {
    works_[next_launch_] = comm_.allreduceAsync(buckets_[next_launch_]);
    ++next_launch_;
  }
}

void GradientAverager::launchRemaining() {
  if (!overlap_) return;
  if (armed_) started_in_backward_ = next_launch_;
  armed_ = false;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    if (ready_[i] != 0) continue;
    adopt(i);  // no gradient this step: the view's zeros (or what zero_grad left) go out
    ready_[i] = 1;
    for (const std::size_t b : param_buckets_[i]) --waiting_[b];
  }
  launchReadyInOrder();
}

void GradientAverager::finish() {
  if (!overlap_) return;
  launchRemaining();
  for (std::size_t b = 0; b < next_launch_; ++b) works_[b]->wait();
  resetStep();
  if (!loss_prescaled_) flat_.div_(static_cast<double>(comm_.size()));
  comm_.synchronize();
}

}  // namespace lrfind::comm
