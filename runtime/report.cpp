#include "runtime/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "comm/errors.h"
#include "lrfind/config.h"

namespace lrfind::runtime {

std::string formatLr(double lr) {
  if (!std::isfinite(lr)) return "none";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", lr);
  return buf;
}

namespace {

nlohmann::json number(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(); }

nlohmann::json series(const std::vector<double>& v) {
  auto out = nlohmann::json::array();
  for (double x : v) out.push_back(number(x));
  return out;
}

}  // namespace

std::string renderJson(const finder::SweepResult& result, const finder::SweepOptions& options,
                       const RunInfo& info, const std::string& results_path) {
  using nlohmann::json;
  const auto& chosen = result.suggestion();
  json suggestions = json::object();
  for (const auto& s : result.suggestions) {
    json entry = {{"lr", s.found ? number(s.lr) : json()}, {"index", s.found ? json(s.index) : json()}};
    if (!s.found) entry["note"] = s.note;
    suggestions[finder::toString(s.method)] = entry;
  }
  json j = {
      {"lrfind_version", LRFIND_VERSION},
      {"suggested_lr", chosen.found ? number(chosen.lr) : json()},
      {"suggest_method", finder::toString(result.method)},
      {"suggestions", suggestions},
      {"stop_reason", finder::toString(result.stop_reason)},
      {"steps_completed", result.stepsCompleted()},
      {"results", results_path},
      {"config",
       {{"min_lr", options.min_lr},
        {"max_lr", options.max_lr},
        {"num_training", options.num_training},
        {"mode", finder::toString(options.mode)},
        {"early_stop_threshold",
         options.early_stop_threshold ? json(*options.early_stop_threshold) : json()},
        {"beta", options.beta},
        {"skip_begin", options.skip_begin},
        {"skip_end", options.skip_end},
        {"accumulate", options.accumulate},
        {"model", info.model},
        {"data", info.data},
        {"optimizer", info.optimizer},
        {"loss_fn", info.loss_fn},
        {"device", info.device},
        {"batch_size", info.batch_size},
        {"global_batch_size", info.global_batch_size},
        {"world_size", info.world_size},
        {"seed", info.seed}}},
      {"curve", {{"lr", series(result.lr)}, {"loss", series(result.loss)}, {"loss_raw", series(result.loss_raw)}}},
  };
  if (!chosen.found) j["no_suggestion_reason"] = chosen.note;
  if (!result.step_seconds.empty()) {
    // The median step, which leaves out the first step's warm-up (allocations, CUDA context).
    std::vector<double> sorted = result.step_seconds;
    std::sort(sorted.begin(), sorted.end());
    double total = 0;
    for (double t : sorted) total += t;
    j["timing"] = {{"seconds_per_step_median", sorted[sorted.size() / 2]}, {"seconds_total", total}};
  }
  return j.dump(2) + "\n";
}

namespace {

struct Axis {
  double lo, hi;  // data range (log10 units when logarithmic)
  double px0, px1;
  double map(double v) const { return px0 + (v - lo) / (hi - lo) * (px1 - px0); }
};

// 1, 2, 5 × 10^k steps giving about `target` ticks over [lo, hi].
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

std::string fmt(const char* f, double v) {
  char buf[48];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// The y range of both plots: the finite smoothed losses, leaving out the final
// `skip_end` points (the divergence that stopped the sweep would squash the rest of the
// curve). {+inf, -inf} when there is none.
std::pair<double, double> lossRange(const finder::SweepResult& result, int64_t skip_end) {
  double lo = INFINITY, hi = -INFINITY;
  const auto n = static_cast<int64_t>(result.loss.size());
  for (int64_t k = 0; k < std::max<int64_t>(1, n - skip_end) && k < n; ++k) {
    if (!std::isfinite(result.loss[k])) continue;
    lo = std::min(lo, result.loss[k]);
    hi = std::max(hi, result.loss[k]);
  }
  return {lo, hi};
}

// The step whose lr is closest to `lr` (in log10 when `logx`); -1 when there is none.
int64_t nearestStep(const std::vector<double>& lrs, double lr, bool logx) {
  int64_t best = -1;
  double best_gap = INFINITY;
  for (std::size_t k = 0; k < lrs.size(); ++k) {
    const double gap = logx ? std::abs(std::log10(lrs[k]) - std::log10(lr)) : std::abs(lrs[k] - lr);
    if (gap < best_gap) {
      best_gap = gap;
      best = static_cast<int64_t>(k);
    }
  }
  return best;
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

}  // namespace

std::string renderSvg(const finder::SweepResult& result, const finder::SweepOptions& options,
                      const RunInfo& info) {
  constexpr double kWidth = 760, kHeight = 460;
  constexpr double kLeft = 80, kRight = 30, kTop = 50, kBottom = 60;
  const bool logx = options.mode == finder::Mode::kExponential;
  auto xval = [&](double lr) { return logx ? std::log10(lr) : lr; };

  // Every finite point is drawn; the y range leaves the last ones out and clips the line.
  std::vector<std::pair<double, double>> pts;
  const auto n = static_cast<int64_t>(result.lr.size());
  for (int64_t k = 0; k < n; ++k) {
    if (std::isfinite(result.loss[k])) pts.emplace_back(xval(result.lr[k]), result.loss[k]);
  }
  auto [ylo, yhi] = lossRange(result, options.skip_end);
  std::ostringstream svg;
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << kWidth << "\" height=\"" << kHeight
      << "\" viewBox=\"0 0 " << kWidth << ' ' << kHeight << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
      << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      << "<text x=\"" << kWidth / 2 << "\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">LR range test: "
      << escape(info.model) << ", " << escape(info.optimizer) << ", " << escape(info.loss_fn) << " ("
      << finder::toString(result.stop_reason) << " after " << n << " steps)</text>\n";
  if (pts.empty()) {
    svg << "<text x=\"" << kWidth / 2 << "\" y=\"" << kHeight / 2
        << "\" text-anchor=\"middle\">no finite loss was recorded</text>\n</svg>\n";
    return svg.str();
  }
  if (!(yhi > ylo)) {
    const double pad = std::max(std::abs(ylo) * 0.05, 1e-3);
    ylo -= pad;
    yhi += pad;
  }
  const double ypad = (yhi - ylo) * 0.05;
  Axis ax{xval(options.min_lr), xval(options.max_lr), kLeft, kWidth - kRight};
  Axis ay{ylo - ypad, yhi + ypad, kHeight - kBottom, kTop};
  const double plot_w = kWidth - kLeft - kRight, plot_h = kHeight - kTop - kBottom;

  svg << "<defs><clipPath id=\"plot\"><rect x=\"" << kLeft << "\" y=\"" << kTop << "\" width=\"" << plot_w
      << "\" height=\"" << plot_h << "\"/></clipPath></defs>\n"
      << "<rect x=\"" << kLeft << "\" y=\"" << kTop << "\" width=\"" << plot_w << "\" height=\"" << plot_h
      << "\" fill=\"none\" stroke=\"#333\"/>\n";

  // x ticks: decades in log mode (every other one when crowded), nice steps in linear.
  std::vector<double> xticks;
  if (logx) {
    const double span = ax.hi - ax.lo;
    const int every = span > 12 ? 2 : 1;
    for (double d = std::ceil(ax.lo); d <= ax.hi + 1e-9; d += 1) {
      if (static_cast<long>(d) % every == 0) xticks.push_back(d);
    }
    if (xticks.size() < 2) xticks = niceTicks(ax.lo, ax.hi, 5);
  } else {
    xticks = niceTicks(ax.lo, ax.hi, 6);
  }
  for (double t : xticks) {
    const double px = ax.map(t);
    const std::string label = logx ? (std::abs(t - std::round(t)) < 1e-9 ? fmt("1e%.0f", t) : formatLr(std::pow(10, t)))
                                   : formatLr(t);
    svg << "<line x1=\"" << px << "\" y1=\"" << kTop << "\" x2=\"" << px << "\" y2=\"" << kHeight - kBottom
        << "\" stroke=\"#ddd\"/>\n<text x=\"" << px << "\" y=\"" << kHeight - kBottom + 18
        << "\" text-anchor=\"middle\">" << label << "</text>\n";
  }
  for (double t : niceTicks(ay.lo, ay.hi, 6)) {
    const double py = ay.map(t);
    svg << "<line x1=\"" << kLeft << "\" y1=\"" << py << "\" x2=\"" << kWidth - kRight << "\" y2=\"" << py
        << "\" stroke=\"#ddd\"/>\n<text x=\"" << kLeft - 8 << "\" y=\"" << py + 4
        << "\" text-anchor=\"end\">" << fmt("%.4g", t) << "</text>\n";
  }
  svg << "<text x=\"" << kLeft + plot_w / 2 << "\" y=\"" << kHeight - 18 << "\" text-anchor=\"middle\">learning rate"
      << (logx ? " (log scale)" : "") << "</text>\n"
      << "<text transform=\"translate(22," << kTop + plot_h / 2
      << ") rotate(-90)\" text-anchor=\"middle\">loss (smoothed, beta=" << options.beta << ")</text>\n";

  svg << "<polyline clip-path=\"url(#plot)\" fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" points=\"";
  for (const auto& [x, y] : pts) svg << fmt("%.2f", ax.map(x)) << ',' << fmt("%.2f", ay.map(y)) << ' ';
  svg << "\"/>\n";

  // Every method's point, in its colour, and a legend listing them all, bottom left
  // (where a range test's curve rarely goes: it starts high and falls to the right).
  static const char* const kColors[] = {"#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"};
  const double legend_x = kLeft + 16;
  const double legend_y = kHeight - kBottom - 18 * static_cast<double>(result.suggestions.size()) - 4;
  svg << "<rect x=\"" << legend_x - 8 << "\" y=\"" << legend_y - 14 << "\" width=\"170\" height=\""
      << 18 * result.suggestions.size() + 8 << "\" fill=\"white\" fill-opacity=\"0.85\" stroke=\"#999\"/>\n";
  for (std::size_t i = 0; i < result.suggestions.size(); ++i) {
    const auto& s = result.suggestions[i];
    const char* color = kColors[i % (sizeof kColors / sizeof kColors[0])];
    const double ly = legend_y + 18 * static_cast<double>(i);
    const bool chosen_one = s.method == result.method;
    svg << "<circle cx=\"" << legend_x + 4 << "\" cy=\"" << ly - 4 << "\" r=\"5\" fill=\"" << color << "\"/>\n"
        << "<text x=\"" << legend_x + 16 << "\" y=\"" << ly << "\"" << (chosen_one ? " font-weight=\"bold\"" : "")
        << ">" << finder::toString(s.method) << ": " << (s.found ? formatLr(s.lr) : std::string("none"))
        << (chosen_one ? " (chosen)" : "") << "</text>\n";
    // At the suggested lr, on the curve: its nearest recorded step (fastai's `minimum`
    // is a tenth of the lr of the lowest loss, so not the lr of its index).
    const int64_t at = s.found ? nearestStep(result.lr, s.lr, logx) : -1;
    if (at >= 0 && std::isfinite(result.loss[at])) {
      svg << "<circle cx=\"" << ax.map(xval(s.lr)) << "\" cy=\"" << ay.map(std::clamp(result.loss[at], ay.lo, ay.hi))
          << "\" r=\"" << (chosen_one ? 7 : 5) << "\" fill=\"" << color << "\" stroke=\"white\"/>\n";
    }
  }

  const auto& chosen = result.suggestion();
  if (chosen.found && chosen.index >= 0 && chosen.index < n) {
    const double px = ax.map(xval(chosen.lr));
    const bool right_side = px + 200 < kWidth - kRight;  // else the label goes left of the line
    svg << "<line x1=\"" << px << "\" y1=\"" << kTop << "\" x2=\"" << px << "\" y2=\"" << kHeight - kBottom
        << "\" stroke=\"#d62728\" stroke-dasharray=\"5,4\"/>\n"
        << "<text x=\"" << (right_side ? px + 8 : px - 8) << "\" y=\"" << kTop + 18 << "\" text-anchor=\""
        << (right_side ? "start" : "end") << "\" fill=\"#d62728\">suggested lr " << formatLr(chosen.lr) << " ("
        << finder::toString(chosen.method) << ")</text>\n";
  }
  svg << "</svg>\n";
  return svg.str();
}

std::string renderSummary(const finder::SweepResult& result, const finder::SweepOptions& options) {
  std::ostringstream os;
  const auto n = result.stepsCompleted();
  os << "lrfind: " << n << " of " << options.num_training << " steps, stop reason: "
     << finder::toString(result.stop_reason);
  if (n > 0) os << " (last lr " << formatLr(result.lr.back()) << ")";
  os << "\n  method     lr          step\n";
  for (const auto& s : result.suggestions) {
    char line[128];
    std::snprintf(line, sizeof line, "  %-9s%s %-11s %s\n", finder::toString(s.method),
                  s.method == result.method ? "*" : " ", s.found ? formatLr(s.lr).c_str() : "none",
                  s.found ? std::to_string(s.index).c_str() : "-");
    os << line;
  }
  const auto& chosen = result.suggestion();
  if (chosen.found) {
    os << "suggested lr: " << formatLr(chosen.lr) << " (" << finder::toString(chosen.method) << ")\n";
  } else {
    os << "no suggestion: " << chosen.note << "\n";
  }
  return os.str();
}

std::string renderTextPlot(const finder::SweepResult& result, const finder::SweepOptions& options, int width,
                           int height) {
  const bool logx = options.mode == finder::Mode::kExponential;
  auto xval = [&](double lr) { return logx ? std::log10(lr) : lr; };
  const auto n = static_cast<int64_t>(result.lr.size());
  auto [ylo, yhi] = lossRange(result, options.skip_end);
  if (!(ylo <= yhi)) return "  (no finite loss to plot)\n";
  if (yhi == ylo) yhi = ylo + 1e-12;
  const double x0 = xval(options.min_lr), x1 = xval(options.max_lr);
  auto column = [&](double lr) {
    return std::clamp(static_cast<int>(std::lround((xval(lr) - x0) / (x1 - x0) * (width - 1))), 0, width - 1);
  };
  std::vector<std::string> rows(static_cast<std::size_t>(height), std::string(static_cast<std::size_t>(width), ' '));
  const auto& chosen = result.suggestion();
  const int mark = chosen.found ? column(chosen.lr) : -1;
  if (mark >= 0) {
    for (auto& row : rows) row[static_cast<std::size_t>(mark)] = '|';
  }
  for (int64_t k = 0; k < n; ++k) {
    const double y = result.loss[k];
    if (!std::isfinite(y)) continue;
    // 0 at the bottom row, 1 at the top; points outside the range (the last skip_end
    // ones are not in it) sit on the edge as '^' or 'v'.
    const double t = (y - ylo) / (yhi - ylo);
    const int r = height - 1 - static_cast<int>(std::lround(std::clamp(t, 0.0, 1.0) * (height - 1)));
    rows[static_cast<std::size_t>(r)][static_cast<std::size_t>(column(result.lr[k]))] = t > 1 ? '^' : t < 0 ? 'v' : '*';
  }
  std::ostringstream os;
  os << "  loss (smoothed) vs lr" << (logx ? " (log scale)" : "") << ", '|' = suggested lr:\n";
  for (int r = 0; r < height; ++r) {
    const std::string label = r == 0 ? fmt("%.4g", yhi) : r == height - 1 ? fmt("%.4g", ylo) : std::string();
    char prefix[32];
    std::snprintf(prefix, sizeof prefix, "  %10s |", label.c_str());
    os << prefix << rows[static_cast<std::size_t>(r)] << "\n";
  }
  os << "  " << std::string(10, ' ') << " +" << std::string(static_cast<std::size_t>(width), '-') << "\n";
  const std::string left = formatLr(options.min_lr), right = formatLr(options.max_lr);
  os << "  " << std::string(12, ' ') << left
     << std::string(static_cast<std::size_t>(std::max<int>(1, width - static_cast<int>(left.size() + right.size()))), ' ')
     << right << "\n";
  if (mark >= 0) {
    os << "  " << std::string(static_cast<std::size_t>(12 + mark), ' ') << "^ " << formatLr(chosen.lr) << " ("
       << finder::toString(chosen.method) << ")\n";
  }
  return os.str();
}

void writeTextFile(const std::string& path, const std::string& text, const std::string& flag) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) throw IoError(concat(flag, " ", path, ": cannot write the file"));
}

}  // namespace lrfind::runtime
