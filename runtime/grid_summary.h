#pragma once
// What rank 0 knows of a tuning grid's sweeps, and the statistics across them: seed
// groups (a robust suggestion over seeds) and the batch-size scaling fit. Plain data and
// pure functions: no LibTorch, no HDF5, no I/O.

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "finder/options.h"
#include "finder/result.h"
#include "runtime/grid.h"
#include "runtime/run_info.h"

namespace lrfind::runtime {

// One sweep of the grid as world rank 0 holds it: its grid point, who ran it, when, and
// its result (suggestions included), as far as it got.
struct GridSweep {
  std::size_t index = 0;                                    // grid order
  std::vector<std::pair<std::string, std::string>> values;  // (axis, value), axes in grid order
  int group = 0;                                            // the rank group that ran it
  double started_at = 0;  // seconds since the epoch (wall clock)
  double ended_at = 0;    // 0 while it runs
  RunInfo info;           // batch sizes, optimizer, seed, world_size (ranks of its group)
  finder::SweepOptions options;
  finder::SweepResult result;  // suggestions set once it ended
};

// "optimizer=sgd, batch-size=16": the values of every axis of `sweep` but `skip` ("" for
// none), in grid order; "" when no axis is left.
std::string axisLabel(const GridSweep& sweep, const std::string& skip);

// The sweeps that differ only in their seed (a grid with a "seed" axis).
struct SeedGroup {
  std::string label;                // axisLabel(sweep, "seed"); "" when seed is the only axis
  std::vector<std::size_t> sweeps;  // their grid indices, ascending
  // Over the sweeps whose chosen suggestion was found (`found` of them), in log10(lr):
  // the median (median_lr = 10^median), the min, the max, and the interquartile range
  // (numpy's default linear quantiles q75 - q25). NaN when found == 0.
  int found = 0;
  double median_lr = 0;
  double log10_min = 0, log10_max = 0, log10_iqr = 0;
  // The band of the smoothed curves, per step k that at least one sweep reached with a
  // finite smoothed loss: lr[k] and the min, max and median (numpy's) over those sweeps.
  std::vector<double> lr, loss_min, loss_max, loss_median;
};

// lr* against the global batch size B over the sweeps that share every other axis value:
// log10(lr*) = intercept + alpha * log10(B), least squares over the sweeps with a
// suggestion. residual: the root mean square of the fit's residuals in log10(lr).
// alpha, intercept and residual are NaN with fewer than two distinct batch sizes.
struct BatchFit {
  std::string label;                // axisLabel(sweep, "batch-size"); "" when it is the only axis
  std::vector<std::size_t> sweeps;  // the grid indices used (with a suggestion), ascending
  std::vector<double> batch, lr;    // global batch size and suggestion of each
  double alpha = 0, intercept = 0, residual = 0;
};

struct GridSummary {
  std::vector<SeedGroup> seed_groups;  // empty without a "seed" axis; in order of first sweep
  std::vector<BatchFit> batch_fits;    // empty without a "batch-size" axis; in order of first sweep
};

// `sweeps` in grid order (finished ones; a sweep cut short counts with what it has).
GridSummary summarizeGrid(const std::vector<GridAxis>& axes, const std::vector<GridSweep>& sweeps);

// numpy.quantile(values, q) with the default linear method; values not empty.
double quantile(std::vector<double> values, double q);

}  // namespace lrfind::runtime
