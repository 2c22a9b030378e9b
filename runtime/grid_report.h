#pragma once
// The views of a tuning grid, beside report.h's views of one sweep: the console table,
// the JSON summary and the SVG that overlays every sweep's curve. Rank 0 renders them
// from what it holds (GridSweep) and the statistics of summarizeGrid(). No LibTorch and
// no HDF5 here; pure functions of their arguments.

#include <string>
#include <vector>

#include "finder/options.h"
#include "runtime/grid.h"
#include "runtime/grid_summary.h"

namespace lrfind::runtime {

// One table, a row per sweep: its index, one column per axis (headed by the axis's
// name), the chosen method's suggested lr ("-" when none), stop reason, steps and rank
// group. Then a line per seed group (median lr over the seeds with a suggestion, the
// log10 spread and IQR) and per batch-size fit (lr* ~ B^alpha, its residual in log10 lr
// and points), with a note on reading alpha.
std::string renderGridSummary(const std::vector<GridAxis>& axes, const std::vector<GridSweep>& sweeps,
                              const GridSummary& summary);

// The grid as JSON: "axes" ([{name, values}]), "sweeps" (index, values as an object
// axis -> string in grid order, group, started_at, ended_at, steps_completed,
// stop_reason, error when set, suggested_lr, suggest_method, suggestions {method: {lr}},
// global_batch_size, world_size), "seed_groups" and "batch_fits" with every field of
// SeedGroup / BatchFit (the band under "band"), "results" (`results_path`),
// "stop_reason" (the grid's `stop`), "error" when not empty and "config_toml" when not
// empty. Numbers that are not finite are null.
std::string renderGridJson(const std::vector<GridAxis>& axes, const std::vector<GridSweep>& sweeps,
                           const GridSummary& summary, const std::string& results_path,
                           const std::string& config_toml, finder::StopReason stop, const std::string& error);

// Every sweep's smoothed loss against lr (log10 x axis when every sweep's mode is
// exponential), one colour per sweep (per seed group when there are seed groups, the
// seeds' curves then thin and faint, each group's min..max band filled and its median
// drawn thick), each sweep's chosen suggestion circled on its curve, and a legend of the
// axis values (of the groups' labels with seed groups) to the right of the plot. The y
// range ignores divergence: from the lowest loss to twice the largest starting drop
// above the highest starting loss. Elements carry class="curve" (one per sweep,
// data-sweep=index), "band" and "median" (one per seed group), "marker" (data-sweep),
// "legend" (the frame) and "legend-entry" for tools.
std::string renderGridSvg(const std::vector<GridAxis>& axes, const std::vector<GridSweep>& sweeps,
                          const GridSummary& summary);

}  // namespace lrfind::runtime
