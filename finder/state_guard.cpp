#include "finder/state_guard.h"

#include <cstdio>
#include <exception>
#include <typeinfo>

#include <torch/optim/adagrad.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/optimizer.h>
#include <torch/optim/rmsprop.h>
#include <torch/optim/sgd.h>
#include <torch/serialize/archive.h>

namespace lrfind::finder {
namespace {

at::Tensor copyOf(const at::Tensor& t) { return t.defined() ? t.detach().clone() : t; }

// A deep copy of a state of the built-in optimizers; nullptr for any other type. The
// types' own clone() copies tensor handles only, which step() then updates in place.
std::unique_ptr<torch::optim::OptimizerParamState> deepCopy(const torch::optim::OptimizerParamState& s) {
  using namespace torch::optim;
  if (typeid(s) == typeid(SGDParamState)) {
    auto c = std::make_unique<SGDParamState>(static_cast<const SGDParamState&>(s));
    c->momentum_buffer(copyOf(c->momentum_buffer()));
    return c;
  }
  if (typeid(s) == typeid(AdamParamState)) {
    auto c = std::make_unique<AdamParamState>(static_cast<const AdamParamState&>(s));
    c->exp_avg(copyOf(c->exp_avg())).exp_avg_sq(copyOf(c->exp_avg_sq()));
    c->max_exp_avg_sq(copyOf(c->max_exp_avg_sq()));
    return c;
  }
  if (typeid(s) == typeid(AdamWParamState)) {
    auto c = std::make_unique<AdamWParamState>(static_cast<const AdamWParamState&>(s));
    c->exp_avg(copyOf(c->exp_avg())).exp_avg_sq(copyOf(c->exp_avg_sq()));
    c->max_exp_avg_sq(copyOf(c->max_exp_avg_sq()));
    return c;
  }
  if (typeid(s) == typeid(RMSpropParamState)) {
    auto c = std::make_unique<RMSpropParamState>(static_cast<const RMSpropParamState&>(s));
    c->square_avg(copyOf(c->square_avg())).momentum_buffer(copyOf(c->momentum_buffer()));
    c->grad_avg(copyOf(c->grad_avg()));
    return c;
  }
  if (typeid(s) == typeid(AdagradParamState)) {
    auto c = std::make_unique<AdagradParamState>(static_cast<const AdagradParamState&>(s));
    c->sum(copyOf(c->sum()));
    return c;
  }
  return nullptr;
}

}  // namespace

struct StateGuard::SavedState {
  using Map = std::decay_t<decltype(std::declval<torch::optim::Optimizer&>().state())>;
  std::vector<std::pair<Map::key_type, std::unique_ptr<torch::optim::OptimizerParamState>>> entries;
};

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
    saved_options_.push_back(group.options().clone());  // plain values: a deep copy
  }
  saved_state_ = std::make_unique<SavedState>();
  for (const auto& [key, state] : optimizer_.state()) {
    auto copy = deepCopy(*state);
    if (!copy) {
      saved_by_archive_ = true;
      saved_state_->entries.clear();
      break;
    }
    saved_state_->entries.emplace_back(key, std::move(copy));
  }
  if (saved_by_archive_) {
    torch::serialize::OutputArchive archive;
    optimizer_.save(archive);
    std::ostringstream os;
    archive.save_to(os);
    saved_archive_ = os.str();
  }
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
  // Drop state created during the sweep (e.g. momentum buffers of a fresh optimizer).
  optimizer_.state().clear();
  if (saved_by_archive_) {
    std::istringstream is(saved_archive_);
    torch::serialize::InputArchive archive;
    archive.load_from(is);
    optimizer_.load(archive);
  } else {
    for (auto& [key, state] : saved_state_->entries) optimizer_.state()[key] = std::move(state);
  }
  auto& groups = optimizer_.param_groups();
  for (std::size_t i = 0; i < groups.size() && i < saved_options_.size(); ++i) {
    groups[i].set_options(std::move(saved_options_[i]));
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
