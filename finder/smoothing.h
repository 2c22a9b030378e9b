#pragma once
// Loss smoothing and the stop rule, exactly as docs/algorithm.md gives them.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <vector>

#include "finder/options.h"

namespace lrfind::finder {

// Bias-corrected exponential moving average:
//   avg_k = beta·avg_{k−1} + (1−beta)·x_k, avg_{−1} = 0, out_k = avg_k / (1 − beta^(k+1)).
// beta = 0 returns x_k unchanged. A non-finite x poisons every later value, which the
// stop rule turns into a stop at once.
class EmaSmoother {
 public:
  explicit EmaSmoother(double beta) : beta_(beta) {}

  double update(double x) {
    avg_ = beta_ * avg_ + (1.0 - beta_) * x;
    beta_pow_ *= beta_;
    return avg_ / (1.0 - beta_pow_);
  }

 private:
  double beta_;
  double avg_ = 0.0;
  double beta_pow_ = 1.0;  // beta^(k+1) after the k-th update
};

// Which test stopped a sweep as "diverged" (docs/algorithm.md, "Stop rule"):
// kRatio: smoothed_k > threshold·best (Lightning's rule), while best > kStopFloor;
// kShift: smoothed_k − best > (threshold − 1)·scale, where best ≤ kStopFloor (zero,
// negative, or float noise), with scale = max(1.4826·MAD(loss_raw_0..loss_raw_{K−1}),
// kStopFloor) fixed after the first K = kScaleSteps steps.
enum class StopTest { kNone, kRatio, kShift };
const char* toString(StopTest test);

// Below this best smoothed loss the ratio has no meaning (zero, negative losses) or is
// float noise (an MSE of 1e-13 that wobbles by 4x): the shift test takes over, and the
// scale is at least this.
constexpr double kStopFloor = 1e-8;
// The steps whose raw losses fix the shift test's scale: at a default schedule
// (1e-8 to 1 over 100 steps) the lr is still below 1e-7 there.
constexpr int64_t kScaleSteps = 10;

// best starts at smoothed_0; for k ≥ 1 the sweep stops as "diverged" when the test for
// best's sign says so (StopTest), then best = min(best, smoothed_k). The shift test
// needs its scale: before step K it does not stop. A non-finite raw or smoothed loss
// stops as "nonfinite" at once. Reaching the last step is "completed". Curves whose
// best stays above kStopFloor stop exactly as with the ratio alone.
class StopRule {
 public:
  StopRule(std::optional<double> threshold, int64_t num_training)
      : threshold_(threshold), num_training_(num_training) {}

  // Observe step k (called for k = 0, 1, … in order); kRunning means go on.
  StopReason observe(int64_t step, double raw, double smoothed);

  double best() const { return best_; }
  // The test that stopped the sweep as diverged; kNone otherwise.
  StopTest decidedBy() const { return decided_by_; }
  // The shift test's scale once fixed (after kScaleSteps steps), else NaN.
  double scale() const { return scale_; }

 private:
  std::optional<double> threshold_;
  int64_t num_training_;
  double best_ = 0.0;
  std::vector<double> early_raw_;  // the first kScaleSteps raw losses
  double scale_ = std::numeric_limits<double>::quiet_NaN();
  StopTest decided_by_ = StopTest::kNone;
};

}  // namespace lrfind::finder
