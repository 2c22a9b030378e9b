#pragma once
// What the views of one sweep (runtime/report.cpp) and of a grid
// (runtime/grid_report.cpp) draw and write with, so that both pictures share one look:
// a plot's axes, ticks and frame, SVG text, JSON numbers. Internal to lrfind_runtime.
// No LibTorch, no HDF5, and no JSON library: the JSON helpers are templates over the
// caller's nlohmann type (report.cpp's keys sorted, grid_report.cpp's in order).

#include <cmath>
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

namespace lrfind::runtime::report_util {

// One axis of a plot: data [lo, hi] (log10 units when logarithmic) onto pixels
// [px0, px1]; for y, px0 is the bottom (SVG's y grows downwards).
struct Axis {
  double lo, hi;
  double px0, px1;
  double map(double v) const { return px0 + (v - lo) / (hi - lo) * (px1 - px0); }
};

// 1, 2, 5 x 10^k steps giving about `target` ticks over [lo, hi].
std::vector<double> niceTicks(double lo, double hi, int target);

// A finite loss range [lo, hi] with room for a flat curve: when not hi > lo, widened on
// each side by 5% of |lo|, at least 1e-3.
void widenFlatLossRange(double& lo, double& hi);

// One number through printf's `format` ("%.2f").
std::string fmt(const char* format, double v);

// `s` with &, <, > and " escaped, for SVG text and attribute values.
std::string escape(const std::string& s);

// Width of `text` at the plots' 12 px sans-serif; a little generous (0.6 em per
// character), so that boxes sized by it hold the text in any sans-serif font.
double textWidth(const std::string& text);

// The step whose lr in `lrs` is closest to `lr` (in log10 when `logx`); -1 when there is
// none. With `finite_losses`, only the steps that have a finite loss there count.
int64_t nearestStep(const std::vector<double>& lrs, double lr, bool logx,
                    const std::vector<double>* finite_losses = nullptr);

// The opening <svg> of a `width` x `height` picture, its white background and `title`
// (SVG text, escaped already) centred on `title_x`.
void writeHeader(std::ostream& svg, double width, double height, double title_x, const std::string& title);

// What a plot without a finite loss shows, centred on (x, y), and the closing </svg>.
void writeNothingToPlot(std::ostream& svg, double x, double y);

// The plot's frame (class="axes") and the clip path "plot" for what is drawn inside it,
// grid lines and tick labels on both axes (x: decades in log mode), and the axes' titles:
// "learning rate" below, `y_title` (SVG text) turned along the left side. `ax` and `ay`
// span the plot's pixels; `height` is the whole picture's.
void writeAxes(std::ostream& svg, const Axis& ax, const Axis& ay, bool logx, double height,
               const std::string& y_title);

// A JSON number, or null for one that is not finite (JSON has neither NaN nor infinity).
template <typename Json>
Json number(double v) {
  return std::isfinite(v) ? Json(v) : Json();
}

// An array of number()s.
template <typename Json>
Json series(const std::vector<double>& v) {
  auto out = Json::array();
  for (double x : v) out.push_back(number<Json>(x));
  return out;
}

}  // namespace lrfind::runtime::report_util
