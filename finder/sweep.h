#pragma once
// The LR range test loop, data-parallel over a Communicator.
//
// Per step k (every rank, in lockstep):
//   1. set lr_k (rank 0's decision; lr_0 = min_lr) times the group's multiplier on every
//      param group (SweepContext::lr_multipliers: by default each group's initial lr
//      ratio to the first group's, so the first group follows the schedule);
//   2. forward/backward on `accumulate` micro-batches of this rank's BatchSource
//      (loss / (accumulate·world), so the gradients summed over ranks are those of the
//      global mean);
//   3. gather {loss sum, samples, status} to rank 0 — a rank that failed still sends,
//      with its status set;
//   4. rank 0 computes the global mean loss, smooths it, applies the stop rule and
//      broadcasts {continue|stop, next lr, reason, failing rank};
//   5. on continue: sum gradients over ranks (bucketed, in place) and take the
//      optimizer step.
// Deciding before the update means no update is ever applied from a step that some
// rank failed, and every rank leaves the loop after the same broadcast.
//
// Validation mode (SweepContext::validation set): step 4 only stops on a failure; after
// the update every rank evaluates its share of the held-out data (eval mode, no
// gradients, then train mode again), a second gather brings rank 0 {loss sum, samples,
// status, eval time}, and rank 0 takes the mean over every held-out sample (each
// batch's mean loss weighted by its size, as torch-lr-finder's _validate), smooths the
// monitored loss, applies the stop rule and broadcasts the decision. As in
// torch-lr-finder, the update of the step that diverged is applied (the validation loss
// needs it); the model is restored afterwards either way.
//
// Before step 0 the parameters are broadcast from rank 0. When the loop ends — by
// completion, a stop, or an exception — the model and optimizer are restored bit for
// bit (StateGuard) unless options.restore_state is false.
//
// Errors: a local exception on any rank ends the sweep on all ranks with a
// comm::Agreed<CommError> "rank R, step K: <message>" after the observer's onEnd saw
// stop_reason = error. A collective that passes its deadline (comm/wait.h) ends the
// sweep on the rank where it happened with comm::CommTimeout "step K: rank R (host, pid
// P) did not answer within T s (...)", after the observer's onEnd saw stop_reason =
// timeout with the steps so far. The communicators are unusable then; the ranks do not
// agree on anything more (a peer may be gone), so the caller ends the process.
//
// Frozen parameters (requires_grad false) are broadcast with the rest before step 0 but
// are not averaged: they keep no gradient, so the optimizer leaves them alone, exactly
// as in one process.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "comm/grad_sync.h"
#include "finder/model.h"
#include "finder/options.h"
#include "finder/result.h"

namespace torch::optim {
class Optimizer;
}

namespace lrfind::finder {

// Testing hook: called on every rank before step k's forward pass.
using StepHook = std::function<void(int64_t step)>;

struct SweepContext {
  comm::Communicator* comm = nullptr;   // control messages (host tensors); nullptr: a world of one
  // The model's own tensors: the start-up parameter broadcast and gradient averaging.
  // NCCL (or host staging) for a model on a GPU; nullptr: `comm`. Same ranks as `comm`.
  comm::Communicator* tensor_comm = nullptr;
  SweepObserver* observer = nullptr;
  // Each optimizer param group's lr as a multiple of the scheduled lr, one per group.
  // Empty: each group's lr when the sweep starts, divided by the first group's (which
  // must then be positive when there are several groups).
  std::vector<double> lr_multipliers;
  // Validation mode: this rank's share of the held-out data, evaluated after every
  // update; nullptr: none (SweepOptions::monitor must then be kTrain).
  EvalSource* validation = nullptr;
  StepHook before_step;
  // How gradients are averaged (comm/grad_sync.h): bucket sizes, overlap with backward,
  // shared memory. Overlapped or not, the same buckets and sums: the same bits (with the
  // one exception grad_sync.h states). The sweep sets loss_prescaled itself.
  comm::AveragingOptions averaging;
  // Rank 0, once, before step 0, with several ranks: how the gradients are averaged
  // ("shared memory, overlapped with backward, 2 bucket(s) of at most 1 MiB (the first)
  // and 25 MiB") and, where shared memory was asked for and not used, why (else empty).
  std::function<void(const std::string& how, const std::string& no_shared_memory)> on_averaging;
  // After the last step, compare a checksum of the parameters across ranks (before the
  // restore) and fail with CommError if any rank differs.
  bool check_consistency = false;
  // Polled on every rank once per step, after the forward/backward pass. If it returns
  // true on any rank, every rank stops after that step with StopReason::kInterrupted
  // (the step's loss is recorded, no update is applied). How a signal becomes `true`
  // is the caller's business (runtime/signals.h).
  std::function<bool()> interrupted;
  // How error messages and suggestion notes name the options (the CLI: its flags).
  OptionNamer option_name = fieldName;
};

// Runs the range test. The returned result is complete on rank 0; other ranks get the
// lr/stop fields only.
SweepResult runSweep(Model& model, torch::optim::Optimizer& optimizer, BatchSource& data,
                     const LossFn& loss_fn, const SweepOptions& options,
                     const SweepContext& context = {});

}  // namespace lrfind::finder
