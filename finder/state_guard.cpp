#include "finder/state_guard.h"

#include <cstdio>
#include <exception>

#include <torch/optim/optimizer.h>
#include <torch/serialize/archive.h>

namespace lrfind::finder {

StateGuard::StateGuard(Model& model, torch::optim::Optimizer& optimizer)
    : model_(model), optimizer_(optimizer) {
  at::NoGradGuard no_grad;
  params_ = model_.parameters();
  buffers_ = model_.buffers();
  for (const auto& p : params_) {
    saved_params_.push_back(p.detach().clone());
    saved_grads_.push_back(p.grad().defined() ? p.grad().detach().clone() : at::Tensor());
  }
  for (const auto& b : buffers_) {
    saved_buffers_.push_back(b.detach().clone());
  }
  for (auto& group : optimizer_.param_groups()) {
    saved_lrs_.push_back(group.options().get_lr());
  }
  // The optimizer's own serialization is the one deep copy that knows every state type
  // (momentum buffers, Adam moments, step counts), including user optimizers.
  torch::serialize::OutputArchive archive;
  optimizer_.save(archive);
  std::ostringstream os;
  archive.save_to(os);
  saved_optimizer_ = os.str();
  was_training_ = model_.isTraining();
}

void StateGuard::restore() {
  if (!active_) return;
  active_ = false;
  {
    at::NoGradGuard no_grad;
    for (std::size_t i = 0; i < params_.size(); ++i) {
      params_[i].copy_(saved_params_[i]);
      if (saved_grads_[i].defined()) {
        params_[i].mutable_grad() = saved_grads_[i];
      } else {
        params_[i].mutable_grad() = at::Tensor();
      }
    }
    for (std::size_t i = 0; i < buffers_.size(); ++i) {
      buffers_[i].copy_(saved_buffers_[i]);
    }
  }
  // load() merges into the existing state; clear it so that state created during the
  // sweep (e.g. momentum buffers of a fresh optimizer) does not survive.
  optimizer_.state().clear();
  std::istringstream is(saved_optimizer_);
  torch::serialize::InputArchive archive;
  archive.load_from(is);
  optimizer_.load(archive);
  auto& groups = optimizer_.param_groups();
  for (std::size_t i = 0; i < groups.size() && i < saved_lrs_.size(); ++i) {
    groups[i].options().set_lr(saved_lrs_[i]);
  }
  model_.setTraining(was_training_);
}

StateGuard::~StateGuard() {
  if (!active_) return;
  try {
    restore();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lrfind: could not restore model/optimizer state: %s\n", e.what());
  }
}

}  // namespace lrfind::finder
