#pragma once
// lrfind: the learning-rate range test (Smith 2015) as a C++ library.
//
// This is the whole public API: one call on your own torch::nn module, optimizer, data
// and loss. During the call the learning rate grows after each optimizer step from
// min_lr to max_lr; the loss is recorded and smoothed, the sweep stops when it diverges,
// and a learning rate is suggested from the curve. Afterwards
// the module (parameters, gradients, buffers, training flag) and the optimizer (state,
// learning rates and other options) are exactly as they were.
//
//   #include <lrfind/lrfind.h>            // CMake: find_package(lrfind) and
//                                         //        target_link_libraries(app lrfind::lrfind)
//   lrfind::Options options;
//   options.max_lr = 10;
//   auto result = lrfind::findLr(net, optimizer, next_batch, loss, options);
//   if (result.suggested_lr) train_with(*result.suggested_lr);
//
// Parameter groups: the optimizer's first param group follows the schedule (its lr is
// Result::lr), and every other group keeps the ratio of its lr to the first group's that
// it had when findLr was called, as Ignite's and DeepSpeed's range tests do. A head at
// 10x the backbone's lr before the call is at 10x the scheduled lr at every step, and the
// suggestion is the first group's lr (scale the others by their ratios). With several
// groups the first group's lr must be positive.
//
// Distributed: set Options::mpi_comm to an MPI communicator (MPI already initialized by
// you). Every rank of it calls findLr with its own shard of the data; gradients are
// averaged (CPU tensors), rank 0 decides when to stop, and every rank returns the same
// lr and stop reason (the loss curve on rank 0).
//
// Errors: std::invalid_argument for bad options (naming the Options field, e.g.
// "min_lr"); std::runtime_error for everything else (a failing batch or loss, a failure
// on another rank, or another rank that did not answer within 300 s: after that the
// ranks no longer agree on anything, so end the process). Not thread-safe: one call at a
// time per module and optimizer.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>
#include <torch/types.h>

namespace lrfind {

struct Options {
  double min_lr = 1e-8;                               // first lr (> 0)
  double max_lr = 1.0;                                // last lr (> min_lr)
  int64_t num_training = 100;                         // optimizer steps (>= 2)
  std::string mode = "exponential";                   // or "linear"
  std::optional<double> early_stop_threshold = 4.0;   // stop when smoothed loss > this × best; nullopt: never
  double beta = 0.98;                                 // loss smoothing in [0, 1)
  std::string suggest = "steepest";                   // steepest, valley, minimum, steep, slide
  int64_t skip_begin = 10;                            // points the suggestion ignores at the start
  int64_t skip_end = 1;                               // ... and at the end
  int64_t accumulate = 1;                             // batches per optimizer step
  void* mpi_comm = nullptr;                           // MPI_Comm* to sweep with; nullptr: this process alone
  // Validation mode: held-out (input, target) batches, this rank's share. After every
  // optimizer step the module runs on all of them in eval mode without gradients (then
  // train mode again); the mean loss over every rank's held-out samples (each batch's
  // loss weighted by its size) is Result::val_loss. Empty: no validation.
  std::vector<std::pair<torch::Tensor, torch::Tensor>> val_data;
  // Which loss is smoothed, stops the sweep and gives the suggestions: "train" or "val";
  // empty: "val" when val_data is given, else "train".
  std::string monitor;
  // "fp32"; "bf16": forward and loss under autocast in bfloat16 (CPU or CUDA); "fp16"
  // (CUDA only): in float16, with GradScaler's dynamic loss scaling (a step whose
  // gradients are not finite is skipped). Parameters, gradients and optimizer state stay
  // float32.
  std::string precision = "fp32";
};

struct Result {
  std::vector<double> lr;        // per step
  std::vector<double> loss;      // the monitored loss, smoothed (rank 0)
  std::vector<double> loss_raw;  // the step's mean training loss over every rank (rank 0)
  std::vector<double> val_loss;  // validation mode: the held-out loss after each step (rank 0)
  std::vector<std::vector<double>> group_lr;  // [step][param group]: each group's lr (rank 0)
  std::string stop_reason;       // completed, diverged, nonfinite, interrupted
  std::optional<double> suggested_lr;                       // Options::suggest's pick
  std::map<std::string, std::optional<double>> suggestions;  // every method's pick
};

// One batch of (input, target); called once per micro-batch, it should cycle through
// the data. The loss returns the mean over the batch (a scalar).
using BatchFn = std::function<std::pair<torch::Tensor, torch::Tensor>()>;
using LossFn = std::function<torch::Tensor(const torch::Tensor& output, const torch::Tensor& target)>;
using ForwardFn = std::function<torch::Tensor(const torch::Tensor& input)>;

// The general form: any module and how to call it.
Result findLr(const std::shared_ptr<torch::nn::Module>& module, const ForwardFn& forward,
              torch::optim::Optimizer& optimizer, const BatchFn& next_batch, const LossFn& loss,
              const Options& options = {});

// For a module holder (torch::nn::Sequential, or your own TORCH_MODULE type) with a
// forward(Tensor) -> Tensor.
template <typename ModuleHolder>
Result findLr(ModuleHolder& net, torch::optim::Optimizer& optimizer, const BatchFn& next_batch, const LossFn& loss,
              const Options& options = {}) {
  ModuleHolder holder = net;
  return findLr(net.ptr(), [holder](const torch::Tensor& x) mutable { return holder->forward(x); }, optimizer,
                next_batch, loss, options);
}

// "0.1.0"
const char* version();

}  // namespace lrfind
