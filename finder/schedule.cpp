#include "finder/schedule.h"

#include <cmath>

#include "common/error.h"

namespace lrfind::finder {

double scheduledLr(int64_t step, int64_t num_training, double min_lr, double max_lr, Mode mode) {
  LRFIND_CHECK(num_training >= 2 && step >= 0 && step < num_training, "step ", step,
               " outside a schedule of ", num_training);
  // Pin the ends: pow() and the linear blend may be off by an ulp there.
  if (step == 0) return min_lr;
  if (step == num_training - 1) return max_lr;
  const double r = static_cast<double>(step) / static_cast<double>(num_training - 1);
  if (mode == Mode::kExponential) {
    return min_lr * std::pow(max_lr / min_lr, r);
  }
  return min_lr + r * (max_lr - min_lr);
}

}  // namespace lrfind::finder
