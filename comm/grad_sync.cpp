#include "comm/grad_sync.h"

#include <algorithm>
#include <chrono>
#include <numeric>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/utils/lambda_post_hook.h>
#include <torch/csrc/autograd/variable.h>

#include "common/error.h"

namespace lrfind::comm {
namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

GradientAverager::GradientAverager(Communicator& comm, std::vector<at::Tensor> params, std::size_t bucket_bytes,
                                   bool loss_prescaled)
    : GradientAverager(comm, std::move(params), [&] {
        AveragingOptions o;
        o.bucket_bytes = o.first_bucket_bytes = bucket_bytes;
        o.loss_prescaled = loss_prescaled;
        o.shared_memory = false;
        return o;
      }()) {}

GradientAverager::GradientAverager(Communicator& comm, std::vector<at::Tensor> params,
                                   const AveragingOptions& options)
    : comm_(comm), options_(options), transport_(comm.name()) {
  for (auto& p : params) {
    // Once each: a tensor listed twice (tied weights) has one gradient and one hook.
    const auto same = [&](const at::Tensor& q) { return q.unsafeGetTensorImpl() == p.unsafeGetTensorImpl(); };
    if (p.requires_grad() && std::none_of(params_.begin(), params_.end(), same)) params_.push_back(std::move(p));
  }
  if (comm_.size() == 1 || params_.empty()) return;
  const auto& first = params_.front();
  int64_t total = 0;
  for (const auto& p : params_) {
    LRFIND_CHECK(p.scalar_type() == first.scalar_type() && p.device() == first.device(),
                 "gradient averaging needs one dtype and device for all parameters");
    total += p.numel();
  }
  if (options_.shared_memory && first.device().is_cpu()) {
    shared_ = comm_.sharedBuffer(total, first.scalar_type(), &no_shared_memory_);
  }
  if (shared_) {
    flat_ = shared_->local();
    transport_ = "shared memory";
  } else {
    flat_ = at::zeros({total}, first.options().requires_grad(false));
  }
  // The last parameter first: backward produces gradients roughly from the output back.
  std::vector<std::size_t> order(params_.size());
  std::iota(order.rbegin(), order.rend(), std::size_t{0});
  layOut(order);
  // CPU hooks run on the thread that calls backward; device hooks on autograd's device
  // thread, which only a communicator made for it may be called from.
  // One bucket has nothing to overlap with: it can only start with the last gradient.
  overlap_ = options_.overlap && buckets_.size() > 1 && (first.device().is_cpu() || comm_.asyncFromAnyThread());
  if (!overlap_) return;
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

// Views and buckets for the parameters in `order`. The first bucket holds at most
// min(first_bucket_bytes, bucket_bytes), each later one bucket_bytes.
void GradientAverager::layOut(const std::vector<std::size_t>& order) {
  order_ = order;
  views_.assign(params_.size(), at::Tensor());
  std::vector<std::pair<int64_t, int64_t>> ranges(params_.size());  // [begin, end) per parameter
  int64_t offset = 0;
  for (const std::size_t j : order_) {
    ranges[j] = {offset, offset + params_[j].numel()};
    views_[j] = flat_.narrow(0, offset, params_[j].numel()).view(params_[j].sizes());
    offset += params_[j].numel();
  }
  const auto elements = [&](std::size_t bytes) {
    return std::max<int64_t>(1, static_cast<int64_t>(bytes) / static_cast<int64_t>(flat_.element_size()));
  };
  buckets_.clear();
  for (int64_t start = 0; start < offset;) {
    const std::size_t cap = buckets_.empty() ? std::min(options_.first_bucket_bytes, options_.bucket_bytes)
                                             : options_.bucket_bytes;
    const int64_t n = std::min(elements(cap), offset - start);
    buckets_.push_back({start, n, flat_.narrow(0, start, n)});
    start += n;
  }
  param_buckets_.assign(params_.size(), {});
  params_per_bucket_.assign(buckets_.size(), 0);
  for (std::size_t j = 0; j < params_.size(); ++j) {
    for (std::size_t b = 0; b < buckets_.size(); ++b) {
      const int64_t begin = buckets_[b].offset, end = begin + buckets_[b].numel;
      if (begin < ranges[j].second && ranges[j].first < end) {
        param_buckets_[j].push_back(b);
        ++params_per_bucket_[b];
      }
    }
  }
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

void GradientAverager::zeroGradients() {
  std::vector<at::Tensor> old_views;  // before a new layout: where each gradient was
  if (!next_order_.empty()) {
    old_views = views_;
    layOut(next_order_);
    next_order_.clear();
    rebuilt_ = true;
    resetStep();
  }
  if (flat_.defined()) flat_.zero_();
  for (std::size_t i = 0; i < params_.size(); ++i) {
    at::Tensor& grad = params_[i].mutable_grad();
    if (!grad.defined()) continue;
    if (!old_views.empty() && grad.data_ptr() == old_views[i].data_ptr()) {
      grad = views_[i];  // its place moved
    } else if (views_.empty() || grad.data_ptr() != views_[i].data_ptr()) {
      grad.zero_();
    }
  }
}

std::unique_ptr<Work> GradientAverager::start(std::size_t b) {
  if (options_.timeline != nullptr) {
    step_timeline_.bucket_start.resize(buckets_.size(), 0.0);
    step_timeline_.bucket_done.resize(buckets_.size(), 0.0);
    step_timeline_.bucket_start[b] = now();
  }
  if (shared_) return shared_->allreduceAsync(buckets_[b].offset, buckets_[b].numel);
  return comm_.allreduceAsync(buckets_[b].slice);
}

void GradientAverager::average() {
  LRFIND_CHECK(!overlap_, "average() on an overlapping GradientAverager: its hooks start the buckets (use finish())");
  if (options_.timeline != nullptr) step_timeline_.finish_begin = now();
  if (comm_.size() > 1 && !params_.empty()) {
    for (std::size_t i = 0; i < params_.size(); ++i) adopt(i);
    for (std::size_t b = 0; b < buckets_.size(); ++b) {
      if (shared_ || options_.timeline != nullptr) {
        start(b)->wait();  // the same allreduce as comm_.allreduce(), timed per bucket
      } else {
        comm_.allreduce(buckets_[b].slice);
      }
      markDone(b);
    }
  }
  completeStep();
}

void GradientAverager::completeStep() {
  if (comm_.size() > 1 && !params_.empty()) {
    if (!options_.loss_prescaled) flat_.div_(static_cast<double>(comm_.size()));
    // Device backends return before the data moved; bound the wait here rather than let
    // the next step block forever on a collective that never finishes.
    comm_.synchronize();
  }
  if (options_.timeline != nullptr) {
    step_timeline_.finish_end = now();
    options_.timeline->push_back(std::move(step_timeline_));
    step_timeline_ = {};
  }
}

void GradientAverager::markDone(std::size_t b) {
  if (options_.timeline != nullptr && step_timeline_.bucket_done.size() > b && step_timeline_.bucket_done[b] == 0.0) {
    step_timeline_.bucket_done[b] = now();
  }
}

void GradientAverager::resetStep() {
  waiting_ = params_per_bucket_;
  ready_.assign(params_.size(), 0);
  works_.clear();
  works_.resize(buckets_.size());
  next_launch_ = 0;
  first_incomplete_ = 0;
  arrived_ = 0;
  started_early_ = 0;
  armed_ = false;
}

void GradientAverager::beginBackward(bool last) {
  if (options_.timeline != nullptr && last) step_timeline_.backward_begin = now();
  if (overlap_) armed_ = last;
}

void GradientAverager::onGradientReady(std::size_t i) {
  if (!armed_ || ready_[i] != 0) return;
  adopt(i);
  ready_[i] = 1;
  if (observing_) observed_.push_back(i);
  for (const std::size_t b : param_buckets_[i]) --waiting_[b];
  const std::size_t launched = launchReadyInOrder();
  if (++arrived_ < params_.size()) started_early_ += launched;
  // Let the allreduces under way move on while backward computes the next layers; they
  // mostly complete in order, so up to the first one still going.
  while (first_incomplete_ < next_launch_ && works_[first_incomplete_]->test()) markDone(first_incomplete_++);
}

std::size_t GradientAverager::launchReadyInOrder() {
  const std::size_t first = next_launch_;
  while (next_launch_ < buckets_.size() && waiting_[next_launch_] == 0) {
    works_[next_launch_] = start(next_launch_);
    ++next_launch_;
  }
  return next_launch_ - first;
}

void GradientAverager::launchRemaining() {
  if (options_.timeline != nullptr && step_timeline_.backward_end == 0.0) step_timeline_.backward_end = now();
  if (!overlap_) return;
  if (armed_) started_in_backward_ = started_early_;
  armed_ = false;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    if (ready_[i] != 0) continue;
    adopt(i);  // no gradient this step: the view's zeros (or what zero_grad left) go out
    ready_[i] = 1;
    for (const std::size_t b : param_buckets_[i]) --waiting_[b];
  }
  launchReadyInOrder();
}

// After the first overlapped step: rank 0's arrival order, then the parameters that got
// no gradient in the layout's order, becomes every rank's next layout, if it differs.
void GradientAverager::decideLayout() {
  observing_ = false;
  if (!options_.rebuild_order) return;
  std::vector<int64_t> proposal;
  std::vector<char> seen(params_.size(), 0);
  for (const std::size_t j : observed_) {
    proposal.push_back(static_cast<int64_t>(j));
    seen[j] = 1;
  }
  for (const std::size_t j : order_) {
    if (seen[j] == 0) proposal.push_back(static_cast<int64_t>(j));
  }
  observed_.clear();
  at::Tensor order = at::tensor(proposal, at::kLong).to(flat_.device());
  comm_.broadcast(order);  // every rank calls finish(): a collective at the same point
  order = order.to(at::kCPU);
  const auto* o = order.data_ptr<int64_t>();
  std::vector<std::size_t> chosen(o, o + order.numel());
  std::vector<std::size_t> sorted = chosen;
  std::sort(sorted.begin(), sorted.end());
  for (std::size_t k = 0; k < sorted.size(); ++k) {
    if (sorted[k] != k) throw CommError("rank 0's gradient order is not a permutation of this rank's parameters");
  }
  if (chosen != order_) next_order_ = std::move(chosen);
}

void GradientAverager::finish() {
  if (!overlap_) return;
  if (options_.timeline != nullptr) step_timeline_.finish_begin = now();
  launchRemaining();
  for (std::size_t b = 0; b < next_launch_; ++b) {
    works_[b]->wait();
    markDone(b);
  }
  resetStep();
  completeStep();
  if (observing_) decideLayout();
}

}  // namespace lrfind::comm
