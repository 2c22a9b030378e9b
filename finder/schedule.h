#pragma once
// The learning-rate schedule of the range test (docs/algorithm.md): for k = 0 … N−1, r = k/(N−1),
// exponential lr_k = min·(max/min)^r, linear lr_k = min + r·(max−min). Both ends are
// exact: lr_0 == min_lr and lr_{N−1} == max_lr.

#include <cstdint>

#include "finder/options.h"

namespace lrfind::finder {

double scheduledLr(int64_t step, int64_t num_training, double min_lr, double max_lr, Mode mode);

inline double scheduledLr(int64_t step, const SweepOptions& o) {
  return scheduledLr(step, o.num_training, o.min_lr, o.max_lr, o.mode);
}

}  // namespace lrfind::finder
