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

// Smoothed loss vs lr (log10 x axis in exponential mode), labelled axes and ticks, the
// chosen suggestion marked and labelled.
std::string renderSvg(const finder::SweepResult& result, const finder::SweepOptions& options,
                      const RunInfo& info);

// Steps, stop reason and every method's lr; the chosen one marked with '*'.
std::string renderSummary(const finder::SweepResult& result, const finder::SweepOptions& options);

// Writes `text` to `path`; throws IoError naming `flag` on failure.
void writeTextFile(const std::string& path, const std::string& text, const std::string& flag);

}  // namespace lrfind::runtime
