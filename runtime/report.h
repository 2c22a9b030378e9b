#pragma once
// Human- and machine-readable views of a finished sweep: the JSON summary, the SVG
// plot and the console summary. No LibTorch and no HDF5 here.

#include <string>

#include "finder/result.h"
#include "runtime/run_info.h"

namespace lrfind::runtime {

// Suggestions, stop reason, curve, timing and the configuration. `config` holds the
// sweep options and the RunInfo facts under their existing names; when info.config
// (the run's TOML) is set, it is also stored verbatim as `config_toml`, and every key
// of it joins `config` ('-' becomes '_', values typed as the TOML has them) unless a
// key of that name is already there: facts resolved at run time (model, device, ...)
// win over what was asked for.
std::string renderJson(const finder::SweepResult& result, const finder::SweepOptions& options,
                       const RunInfo& info, const std::string& results_path);

// Smoothed loss vs lr (log10 x axis in exponential mode), labelled axes and ticks, every
// method's suggestion marked in its own colour with a legend, the chosen one also as a
// dashed line. The x axis reaches every suggestion (fastai's `minimum` can lie below
// min_lr); markers that would hide each other are drawn as one, labelled with every
// method at it; the legend goes into a corner the curve and markers leave free, or to
// the right of the plot (a wider SVG) when there is none. The axes rectangle, markers
// and legend carry class="axes|marker|legend" (markers also data-methods) for tools.
std::string renderSvg(const finder::SweepResult& result, const finder::SweepOptions& options,
                      const RunInfo& info);

// Steps, stop reason and every method's lr; the chosen one marked with '*'.
std::string renderSummary(const finder::SweepResult& result, const finder::SweepOptions& options);

// With several param groups, each one's lr at the chosen suggestion (its multiple of the
// suggested lr), one line per group; "" with one group or no suggestion.
std::string renderGroupLrs(const finder::SweepResult& result, const RunInfo& info);

// The curve in characters for logs (a Slurm .out file): `height` rows of the smoothed
// loss against lr, `width` columns, the chosen suggestion's column marked.
std::string renderTextPlot(const finder::SweepResult& result, const finder::SweepOptions& options,
                           int width = 60, int height = 10);

// Writes `text` to `path`; throws IoError naming `flag` on failure.
void writeTextFile(const std::string& path, const std::string& text, const std::string& flag);

}  // namespace lrfind::runtime
