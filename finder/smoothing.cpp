#include "finder/smoothing.h"

namespace lrfind::finder {
namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

const char* toString(StopTest test) {
  switch (test) {
    case StopTest::kNone: return "none";
    case StopTest::kRatio: return "ratio";
    case StopTest::kShift: return "shift";
  }
  return "?";
}

StopReason StopRule::observe(int64_t step, double raw, double smoothed) {
  if (!std::isfinite(raw) || !std::isfinite(smoothed)) return StopReason::kNonFinite;
  if (step < kScaleSteps) {
    early_raw_.push_back(raw);
    if (step + 1 == kScaleSteps) {
      // A robust spread of the early curve: the median absolute deviation, scaled to
      // a standard deviation for normal noise.
      const double center = median(early_raw_);
      std::vector<double> deviation;
      for (const double x : early_raw_) deviation.push_back(std::abs(x - center));
      scale_ = std::max(1.4826 * median(deviation), kStopFloor);
    }
  }
  if (step == 0) {
    best_ = smoothed;
  } else {
    if (threshold_) {
      if (best_ > kStopFloor) {
        if (smoothed > *threshold_ * best_) {
          decided_by_ = StopTest::kRatio;
          return StopReason::kDiverged;
        }
      } else if (std::isfinite(scale_) && smoothed - best_ > (*threshold_ - 1.0) * scale_) {
        decided_by_ = StopTest::kShift;
        return StopReason::kDiverged;
      }
    }
    best_ = std::min(best_, smoothed);
  }
  return step + 1 >= num_training_ ? StopReason::kCompleted : StopReason::kRunning;
}

}  // namespace lrfind::finder
