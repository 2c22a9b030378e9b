#pragma once
// Human- and machine-readable views of a finished sweep: the JSON summary, the SVG
// plot and the console summary. No LibTorch here.

#include <string>

#include "finder/result.h"
#include "runtime/results.h"

namespace lrfind::runtime {

// "3.16e-03"-style: three significant digits.
std::string formatLr(double lr);

std::string renderJson(const finder::SweepResult& result, const finder::SweepOptions& options,
                       const RunInfo& info, const std::string& results_path);

// Smoothed loss vs lr (log10 x axis in exponential mode), labelled axes and ticks, every
// method's suggestion marked in its own colour with a legend, the chosen one also as a
// dashed line.
std::string renderSvg(const finder::SweepResult& result, const finder::SweepOptions& options,
                      const RunInfo& info);

// Steps, stop reason and every method's lr; the chosen one marked with '*'.
std::string renderSummary(const finder::SweepResult& result, const finder::SweepOptions& options);

// The curve in characters for logs (a Slurm .out file): `height` rows of the smoothed
// loss against lr, `width` columns, the chosen suggestion's column marked.
std::string renderTextPlot(const finder::SweepResult& result, const finder::SweepOptions& options,
                           int width = 60, int height = 10);

// Writes `text` to `path`; throws IoError naming `flag` on failure.
void writeTextFile(const std::string& path, const std::string& text, const std::string& flag);

}  // namespace lrfind::runtime
