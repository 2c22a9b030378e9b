#pragma once
// Loss smoothing and the stop rule, exactly as docs/algorithm.md gives them.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>

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

// best starts at smoothed_0; for k ≥ 1 the sweep stops as "diverged" when
// smoothed_k > threshold·best, then best = min(best, smoothed_k). A non-finite raw or
// smoothed loss stops as "nonfinite" at once. Reaching the last step is "completed".
class StopRule {
 public:
  StopRule(std::optional<double> threshold, int64_t num_training)
      : threshold_(threshold), num_training_(num_training) {}

  // Observe step k (called for k = 0, 1, … in order); kRunning means go on.
  StopReason observe(int64_t step, double raw, double smoothed) {
    if (!std::isfinite(raw) || !std::isfinite(smoothed)) {
      return StopReason::kNonFinite;
    }
    if (step == 0) {
      best_ = smoothed;
    } else {
      if (threshold_ && smoothed > *threshold_ * best_) {
        return StopReason::kDiverged;
      }
      best_ = std::min(best_, smoothed);
    }
    return step + 1 >= num_training_ ? StopReason::kCompleted : StopReason::kRunning;
  }

  double best() const { return best_; }

 private:
  std::optional<double> threshold_;
  int64_t num_training_;
  double best_ = 0.0;
};

}  // namespace lrfind::finder
