#include "runtime/report_util.h"

#include <algorithm>
#include <cstdio>

#include "runtime/format.h"

namespace lrfind::runtime::report_util {

std::vector<double> niceTicks(double lo, double hi, int target) {
  const double raw = (hi - lo) / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    step = m * mag;
    if (raw <= step) break;
  }
  std::vector<double> ticks;
  for (double t = std::ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) {
    ticks.push_back(std::abs(t) < step * 1e-9 ? 0.0 : t);
  }
  return ticks;
}

void widenFlatLossRange(double& lo, double& hi) {
  if (hi > lo) return;
  const double pad = std::max(std::abs(lo) * 0.05, 1e-3);
  lo -= pad;
  hi += pad;
}

std::string fmt(const char* format, double v) {
  char buf[48];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

double textWidth(const std::string& text) { return 7.2 * static_cast<double>(text.size()); }

int64_t nearestStep(const std::vector<double>& lrs, double lr, bool logx, const std::vector<double>* finite_losses) {
  int64_t best = -1;
  double best_gap = INFINITY;
  for (std::size_t k = 0; k < lrs.size(); ++k) {
    if (finite_losses != nullptr && (k >= finite_losses->size() || !std::isfinite((*finite_losses)[k]))) continue;
    // log10 of an lr <= 0 is no distance (the gap would be inf or NaN, never the best).
    if (logx && !(lrs[k] > 0)) continue;
    const double gap = logx ? std::abs(std::log10(lrs[k]) - std::log10(lr)) : std::abs(lrs[k] - lr);
    if (gap < best_gap) {
      best_gap = gap;
      best = static_cast<int64_t>(k);
    }
  }
  return best;
}

void writeHeader(std::ostream& svg, double width, double height, double title_x, const std::string& title) {
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
      << "\" viewBox=\"0 0 " << width << ' ' << height << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
      << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      << "<text x=\"" << title_x << "\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">" << title << "</text>\n";
}

void writeNothingToPlot(std::ostream& svg, double x, double y) {
  svg << "<text x=\"" << x << "\" y=\"" << y
      << "\" text-anchor=\"middle\">no finite loss was recorded</text>\n</svg>\n";
}

void writeAxes(std::ostream& svg, const Axis& ax, const Axis& ay, bool logx, double height,
               const std::string& y_title) {
  const double left = ax.px0, right = ax.px1, top = ay.px1, bottom = ay.px0;
  const double plot_w = right - left, plot_h = bottom - top;
  svg << "<defs><clipPath id=\"plot\"><rect x=\"" << left << "\" y=\"" << top << "\" width=\"" << plot_w
      << "\" height=\"" << plot_h << "\"/></clipPath></defs>\n"
      << "<rect class=\"axes\" x=\"" << left << "\" y=\"" << top << "\" width=\"" << plot_w << "\" height=\""
      << plot_h << "\" fill=\"none\" stroke=\"#333\"/>\n";

  // x ticks: decades in log mode (every other one when crowded), nice steps in linear.
  std::vector<double> xticks;
  if (logx) {
    const int every = ax.hi - ax.lo > 12 ? 2 : 1;
    for (double d = std::ceil(ax.lo); d <= ax.hi + 1e-9; d += 1) {
      if (static_cast<long>(d) % every == 0) xticks.push_back(d);
    }
    if (xticks.size() < 2) xticks = niceTicks(ax.lo, ax.hi, 5);
  } else {
    xticks = niceTicks(ax.lo, ax.hi, 6);
  }
  for (double t : xticks) {
    const double x = ax.map(t);
    const std::string label =
        logx ? (std::abs(t - std::round(t)) < 1e-9 ? fmt("1e%.0f", t) : formatLr(std::pow(10, t))) : formatLr(t);
    svg << "<line x1=\"" << x << "\" y1=\"" << top << "\" x2=\"" << x << "\" y2=\"" << bottom
        << "\" stroke=\"#ddd\"/>\n<text x=\"" << x << "\" y=\"" << bottom + 18 << "\" text-anchor=\"middle\">"
        << label << "</text>\n";
  }
  for (double t : niceTicks(ay.lo, ay.hi, 6)) {
    const double y = ay.map(t);
    svg << "<line x1=\"" << left << "\" y1=\"" << y << "\" x2=\"" << right << "\" y2=\"" << y
        << "\" stroke=\"#ddd\"/>\n<text x=\"" << left - 8 << "\" y=\"" << y + 4 << "\" text-anchor=\"end\">"
        << fmt("%.4g", t) << "</text>\n";
  }
  svg << "<text x=\"" << left + plot_w / 2 << "\" y=\"" << height - 18 << "\" text-anchor=\"middle\">learning rate"
      << (logx ? " (log scale)" : "") << "</text>\n"
      << "<text transform=\"translate(22," << top + plot_h / 2 << ") rotate(-90)\" text-anchor=\"middle\">" << y_title
      << "</text>\n";
}

}  // namespace lrfind::runtime::report_util
