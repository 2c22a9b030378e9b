#pragma once
// What a sweep produces and who watches it: plain data, no LibTorch, so that results
// writers, plots and reports compile without it.

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "finder/options.h"
#include "finder/suggest.h"

namespace lrfind::finder {

struct StepRecord {
  int64_t step = 0;
  double lr = 0.0;
  double loss_raw = 0.0;  // the step's training loss
  double loss = 0.0;      // smoothed monitored loss (training, or validation)
  std::vector<double> loss_per_rank;
  std::vector<double> group_lr;  // each optimizer param group's lr at this step
  double seconds = 0.0;   // the whole step, evaluation included
  // Validation mode: the loss over the held-out data after the step's update, and the
  // evaluation's wall time on the slowest rank. NaN and 0 without validation.
  double val_loss = std::numeric_limits<double>::quiet_NaN();
  double eval_seconds = 0.0;
  // Dynamic loss scaling (SweepOptions::lossScaling()): the scale this step's loss was
  // multiplied by, and whether its update was skipped (gradients not finite on some
  // rank). 1 and false without it.
  double loss_scale = 1.0;
  bool skipped = false;
};

struct SweepResult {
  std::vector<double> lr;
  std::vector<double> loss;  // smoothed monitored loss
  std::vector<double> loss_raw;
  std::vector<double> val_loss, eval_seconds;  // per step in validation mode; else empty
  std::vector<double> loss_scale;              // per step with loss scaling; else empty
  std::vector<int64_t> skipped;                // per step with loss scaling (0/1); else empty
  std::vector<std::vector<double>> loss_per_rank;  // [step][rank], rank 0 only
  std::vector<std::vector<double>> group_lr;       // [step][param group], rank 0 only
  std::vector<double> step_seconds;
  StopReason stop_reason = StopReason::kRunning;
  // With kDiverged: "ratio" or "shift", the test of the stop rule that decided
  // (finder/smoothing.h); "none" otherwise. stop_scale: the shift test's scale, NaN
  // before it was fixed.
  std::string stop_test = "none";
  double stop_scale = 0.0;
  std::string error;  // set with kError
  std::vector<Suggestion> suggestions;  // every method, allSuggestMethods() order
  std::string suggestion_warning;       // edgeWarning() of the chosen method; "" for none
  SuggestMethod method = SuggestMethod::kSteepest;
  int world_size = 1;

  int64_t stepsCompleted() const { return static_cast<int64_t>(lr.size()); }
  // The suggestion of `method`.
  const Suggestion& suggestion() const;
};

// Sees the sweep as it goes; called on rank 0 only, from the sweep's thread.
class SweepObserver {
 public:
  virtual ~SweepObserver() = default;
  virtual void onStart(const SweepOptions& /*options*/, int /*world_size*/) {}
  virtual void onStep(const StepRecord& /*record*/) {}
  virtual void onEnd(const SweepResult& /*result*/) {}
};

// Fans every event out to several observers, in the order they were added. Holds no
// ownership: each observer must outlive the list's use.
class ObserverList final : public SweepObserver {
 public:
  void add(SweepObserver* observer) { observers_.push_back(observer); }
  void onStart(const SweepOptions& options, int world_size) override;
  void onStep(const StepRecord& record) override;
  void onEnd(const SweepResult& result) override;

 private:
  std::vector<SweepObserver*> observers_;
};

}  // namespace lrfind::finder
