#include "runtime/report.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "lrfind/config.h"
#include "runtime/format.h"
#include "runtime/report_util.h"

namespace lrfind::runtime {
namespace {

using nlohmann::json;

// The plot's pieces and the JSON numbers, shared with grid_report.cpp.
using namespace report_util;

std::string trim(const std::string& s) {
  const auto first = s.find_first_not_of(" \t\r");
  if (first == std::string::npos) return "";
  return s.substr(first, s.find_last_not_of(" \t\r") - first + 1);
}

bool isQuoted(const std::string& v) {
  return v.size() >= 2 && (v.front() == '"' || v.front() == '\'') && v.back() == v.front();
}

// The JSON name of a TOML key: the flag's spelling with '_' for '-', as the library
// names its fields (min-lr -> min_lr).
std::string jsonKey(std::string key) {
  key = trim(key);
  if (isQuoted(key)) key = key.substr(1, key.size() - 2);
  std::replace(key.begin(), key.end(), '-', '_');
  return key;
}

// The items of an array's inside: commas outside quotes and nested brackets.
std::vector<std::string> splitArray(const std::string& inside) {
  std::vector<std::string> items;
  if (trim(inside).empty()) return items;
  std::string item;
  char quote = 0;
  int depth = 0;
  for (char c : inside) {
    if (quote != 0) {
      if (c == quote) quote = 0;
    } else if (c == '"' || c == '\'') {
      quote = c;
    } else if (c == '[') {
      ++depth;
    } else if (c == ']') {
      --depth;
    } else if (c == ',' && depth == 0) {
      items.push_back(item);
      item.clear();
      continue;
    }
    item += c;
  }
  items.push_back(item);
  return items;
}

// One value as CLI11's config_to_str writes it and its config reader reads it back:
// "text" (CLI11 neither escapes nor unescapes inside the quotes, so neither do we),
// 'text' (one holding a '"'), [a,b], true/false, integers, floats, nan/inf (null: JSON
// has neither), and a bare word as a string.
json tomlValue(const std::string& raw) {
  const std::string v = trim(raw);
  if (isQuoted(v)) return v.substr(1, v.size() - 2);
  if (v.size() >= 2 && v.front() == '[' && v.back() == ']') {
    json array = json::array();
    for (const auto& item : splitArray(v.substr(1, v.size() - 2))) array.push_back(tomlValue(item));
    return array;
  }
  if (v == "true") return true;
  if (v == "false") return false;
  if (v.empty()) return v;
  char* end = nullptr;
  errno = 0;
  const long long integer = std::strtoll(v.c_str(), &end, 10);
  if (end == v.c_str() + v.size() && errno == 0) return static_cast<int64_t>(integer);
  const double real = std::strtod(v.c_str(), &end);
  if (end == v.c_str() + v.size()) return number<json>(real);
  return v;
}

// The TOML that lrfind_dist --write-config prints: `key=value` lines, `[table]` lines
// for subcommands, '#' comments. Lines of another shape are not CLI11's and are left out.
json tomlToJson(const std::string& text) {
  json out = json::object();
  json* table = &out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    line = trim(line);
    if (line.empty() || line.front() == '#') continue;
    if (line.front() == '[' && line.back() == ']') {
      table = &out[jsonKey(line.substr(1, line.size() - 2))];
      if (!table->is_object()) *table = json::object();
      continue;
    }
    const auto eq = line.find('=');
    if (eq == std::string::npos) continue;
    (*table)[jsonKey(line.substr(0, eq))] = tomlValue(line.substr(eq + 1));
  }
  return out;
}

// The element at n/2 of the sorted values (the median for odd n); needs n > 0.
double upperMedian(std::vector<double> values) {
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(values.size() / 2), values.end());
  return values[values.size() / 2];
}

}  // namespace

std::string renderJson(const finder::SweepResult& result, const finder::SweepOptions& options,
                       const RunInfo& info, const std::string& results_path) {
  const auto& chosen = result.suggestion();
  json suggestions = json::object();
  for (const auto& s : result.suggestions) {
    json entry = {{"lr", s.found ? number<json>(s.lr) : json()}, {"index", s.found ? json(s.index) : json()}};
    if (!s.found) entry["note"] = s.note;
    suggestions[finder::toString(s.method)] = entry;
  }
  json config = {
      {"min_lr", options.min_lr},
      {"max_lr", options.max_lr},
      {"num_training", options.num_training},
      {"mode", finder::toString(options.mode)},
      {"early_stop_threshold", options.early_stop_threshold ? json(*options.early_stop_threshold) : json()},
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
      {"seed", info.seed},
      {"labels", info.labels},
      {"input_type", info.input_type},
      {"input_scale", info.input_scale},
      {"normalize", info.normalize},
      {"channels_last", info.channels_last},
      {"monitor", finder::toString(options.monitor)},
      {"precision", finder::toString(options.precision)}};
  if (!info.val_data.empty()) {
    config["val_data"] = info.val_data;
    config["val_labels"] = info.val_labels;
    config["val_samples"] = info.val_samples;
    config["val_batches"] = info.val_batches;
  }
  // The same configuration as the HDF5 "config" attribute: the text itself, and its
  // keys beside the resolved facts above, which keep their values ("auto" device ->
  // "cuda:0").
  if (!info.config.empty()) {
    const json given = tomlToJson(info.config);
    for (const auto& item : given.items()) {
      if (config.find(item.key()) == config.end()) config[item.key()] = item.value();
    }
  }
  json j = {
      {"lrfind_version", LRFIND_VERSION},
      {"suggested_lr", chosen.found ? number<json>(chosen.lr) : json()},
      {"suggest_method", finder::toString(result.method)},
      {"suggestions", suggestions},
      {"stop_reason", finder::toString(result.stop_reason)},
      {"stop_rule", result.stop_test},
      {"suggestion_warning", result.suggestion_warning},
      {"stop_scale", number<json>(result.stop_scale)},
      {"steps_completed", result.stepsCompleted()},
      {"results", results_path},
      {"config", config},
      {"curve",
       {{"lr", series<json>(result.lr)},
        {"loss", series<json>(result.loss)},
        {"loss_raw", series<json>(result.loss_raw)}}},
  };
  if (!result.val_loss.empty()) j["curve"]["val_loss"] = series<json>(result.val_loss);
  if (!info.param_groups.empty()) {
    json groups = json::array();
    for (const auto& g : info.param_groups) {
      groups.push_back({{"pattern", g.pattern},
                        {"multiplier", g.multiplier},
                        {"weight_decay", g.weight_decay},
                        {"num_params", g.names.size()},
                        {"numel", g.numel},
                        {"suggested_lr", chosen.found ? number<json>(chosen.lr * g.multiplier) : json()}});
    }
    j["param_groups"] = groups;
  }
  if (!info.config.empty()) j["config_toml"] = info.config;
  if (!chosen.found) j["no_suggestion_reason"] = chosen.note;
  if (!result.step_seconds.empty()) {
    // The median step, which leaves out the first step's warm-up (allocations, CUDA context).
    double total = 0;
    for (double t : result.step_seconds) total += t;
    j["timing"] = {{"seconds_per_step_median", upperMedian(result.step_seconds)}, {"seconds_total", total}};
    if (!result.eval_seconds.empty()) j["timing"]["eval_seconds_per_step_median"] = upperMedian(result.eval_seconds);
  }
  return j.dump(2) + "\n";
}

namespace {

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

struct Point {
  double x, y;
};

// A rectangle in SVG pixels (y grows downwards).
struct Box {
  double x0, y0, x1, y1;
  bool overlaps(const Box& o) const { return x0 <= o.x1 && o.x0 <= x1 && y0 <= o.y1 && o.y0 <= y1; }
  Box grown(double by) const { return {x0 - by, y0 - by, x1 + by, y1 + by}; }
};

// Whether the segment a-b passes through `box` (Liang-Barsky clipping): the line
// between two recorded points can cross a legend that holds neither of them.
bool crosses(Point a, Point b, const Box& box) {
  double t0 = 0, t1 = 1;
  auto clip = [&](double p, double q) {
    if (p == 0) return q >= 0;
    const double t = q / p;
    if (p < 0) {
      if (t > t1) return false;
      t0 = std::max(t0, t);
    } else {
      if (t < t0) return false;
      t1 = std::min(t1, t);
    }
    return true;
  };
  const double dx = b.x - a.x, dy = b.y - a.y;
  return clip(-dx, a.x - box.x0) && clip(dx, box.x1 - a.x) && clip(-dy, a.y - box.y0) && clip(dy, box.y1 - a.y);
}

// Suggestions whose points lie closer than this share one marker: at r = 5..7 the later
// circle would hide most of the earlier one.
constexpr double kCoincidePx = 6;

// One circle on the curve and the suggestions it stands for (indices into
// SweepResult::suggestions, the chosen one first).
struct Marker {
  Point at{};
  std::vector<std::size_t> members;
  bool chosen = false;
  std::string label;  // the methods' names when several share it, else empty
  Box label_box{};
};

}  // namespace

std::string renderSvg(const finder::SweepResult& result, const finder::SweepOptions& options,
                      const RunInfo& info) {
  constexpr double kWidth = 760, kHeight = 460;
  constexpr double kLeft = 80, kRight = 30, kTop = 50, kBottom = 60;
  constexpr double kPlotRight = kWidth - kRight, kPlotBottom = kHeight - kBottom;
  static const char* const kColors[] = {"#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"};
  const bool logx = options.mode == finder::Mode::kExponential;
  auto xval = [&](double lr) { return logx ? std::log10(lr) : lr; };
  auto color = [&](std::size_t i) { return kColors[i % (sizeof kColors / sizeof kColors[0])]; };

  // Every finite point is drawn; the y range leaves the last ones out and clips the line.
  std::vector<std::pair<double, double>> pts;
  const auto n = static_cast<int64_t>(result.lr.size());
  for (int64_t k = 0; k < n; ++k) {
    if (std::isfinite(result.loss[k])) pts.emplace_back(xval(result.lr[k]), result.loss[k]);
  }
  auto [ylo, yhi] = lossRange(result, options.skip_end);
  const std::string title = concat("LR range test: ", escape(info.model), ", ", escape(info.optimizer), ", ",
                                   escape(info.loss_fn), " (", finder::toString(result.stop_reason), " after ", n,
                                   " steps)");
  if (pts.empty()) {
    std::ostringstream svg;
    writeHeader(svg, kWidth, kHeight, kWidth / 2, title);
    writeNothingToPlot(svg, kWidth / 2, kHeight / 2);
    return svg.str();
  }
  widenFlatLossRange(ylo, yhi);
  const double ypad = (yhi - ylo) * 0.05;

  // The x axis spans the sweep and every suggestion: fastai's `minimum` is a tenth of
  // the lr of the lowest loss, which can lie below min_lr. Beyond the sweep a margin
  // keeps the whole circle inside the frame.
  double xlo = xval(options.min_lr), xhi = xval(options.max_lr);
  double mlo = xlo, mhi = xhi;
  for (const auto& s : result.suggestions) {
    if (!s.found || !std::isfinite(xval(s.lr))) continue;
    mlo = std::min(mlo, xval(s.lr));
    mhi = std::max(mhi, xval(s.lr));
  }
  const double margin = 0.02 * (mhi - mlo);
  if (mlo < xlo) xlo = mlo - margin;
  if (mhi > xhi) xhi = mhi + margin;
  const Axis ax{xlo, xhi, kLeft, kPlotRight};
  const Axis ay{ylo - ypad, yhi + ypad, kPlotBottom, kTop};

  std::vector<Point> line;
  for (const auto& [x, y] : pts) line.push_back({ax.map(x), ay.map(y)});

  // Markers. Suggestions that coincide share one circle rather than being offset: an
  // offset circle would mark an lr that no method suggested. It takes the colour of its
  // first method (the chosen one when that is among them), a dark ring says it stands
  // for several, and their names sit beside it; the legend still gives each method its
  // own colour and lr.
  std::vector<std::size_t> order;
  for (std::size_t i = 0; i < result.suggestions.size(); ++i) {
    order.insert(result.suggestions[i].method == result.method ? order.begin() : order.end(), i);
  }
  std::vector<Marker> markers;
  for (std::size_t i : order) {
    const auto& s = result.suggestions[i];
    // At the suggested lr, on the curve: its nearest recorded step (fastai's `minimum`
    // is a tenth of the lr of the lowest loss, so not the lr of its index).
    const int64_t at = s.found ? nearestStep(result.lr, s.lr, logx) : -1;
    if (at < 0 || !std::isfinite(result.loss[at])) continue;
    const Point p{ax.map(xval(s.lr)), ay.map(std::clamp(result.loss[at], ay.lo, ay.hi))};
    auto same = std::find_if(markers.begin(), markers.end(), [&](const Marker& m) {
      return std::hypot(m.at.x - p.x, m.at.y - p.y) < kCoincidePx;
    });
    if (same == markers.end()) {
      Marker m;
      m.at = p;
      m.members.push_back(i);
      m.chosen = s.method == result.method;
      markers.push_back(m);
    } else {
      same->members.push_back(i);
    }
  }
  for (auto& m : markers) {
    if (m.members.size() < 2) continue;
    for (std::size_t i : m.members) {
      m.label += (m.label.empty() ? "" : ", ") + std::string(finder::toString(result.suggestions[i].method));
    }
    const double w = textWidth(m.label);
    const bool right = m.at.x + 10 + w < kPlotRight;
    const double x0 = right ? m.at.x + 10 : m.at.x - 10 - w;
    const double y0 = m.at.y - 24 >= kTop ? m.at.y - 24 : m.at.y + 8;  // below when above would leave the plot
    m.label_box = {x0, y0, x0 + w, y0 + 16};
  }

  // The chosen lr's dashed line and its label at the top.
  const auto& chosen = result.suggestion();
  const bool chosen_line = chosen.found && chosen.index >= 0 && chosen.index < n;
  const double chosen_px = chosen_line ? ax.map(xval(chosen.lr)) : 0;
  const std::string chosen_label =
      concat("suggested lr ", formatLr(chosen.lr), " (", finder::toString(chosen.method), ")");
  const bool chosen_right = chosen_px + 200 < kPlotRight;  // else the label goes left of the line
  Box chosen_box{};
  if (chosen_line) {
    const double w = textWidth(chosen_label);
    chosen_box = chosen_right ? Box{chosen_px + 8, kTop + 6, chosen_px + 8 + w, kTop + 22}
                              : Box{chosen_px - 8 - w, kTop + 6, chosen_px - 8, kTop + 22};
  }

  // The legend: in the first corner that nothing drawn passes through, bottom left
  // first (a range test starts high and falls to the right); to the right of the
  // plot, in a wider picture, when the curve leaves no corner free.
  std::vector<std::string> entries;
  double legend_w = 170;
  for (const auto& s : result.suggestions) {
    entries.push_back(concat(finder::toString(s.method), ": ", s.found ? formatLr(s.lr) : std::string("none"),
                             s.method == result.method ? " (chosen)" : ""));
    legend_w = std::max(legend_w, 24 + textWidth(entries.back()) + 8);
  }
  const double legend_h = 18 * static_cast<double>(entries.size()) + 8;
  auto vacant = [&](const Box& box) {
    const Box stroke = box.grown(3);  // the curve's and the circles' own width
    for (std::size_t k = 0; k < line.size(); ++k) {
      if (crosses(line[k], line[k + 1 < line.size() ? k + 1 : k], stroke)) return false;
    }
    for (const auto& m : markers) {
      if (Box{m.at.x, m.at.y, m.at.x, m.at.y}.grown(7).overlaps(stroke)) return false;
      if (!m.label.empty() && m.label_box.overlaps(stroke)) return false;
    }
    return !(chosen_line && chosen_box.overlaps(stroke));
  };
  constexpr double kInset = 8;
  const double left_x = kLeft + kInset, right_x = kPlotRight - kInset - legend_w;
  const double top_y = kTop + kInset, bottom_y = kPlotBottom - kInset - legend_h;
  const Box corners[] = {{left_x, bottom_y, left_x + legend_w, bottom_y + legend_h},
                         {right_x, top_y, right_x + legend_w, top_y + legend_h},
                         {right_x, bottom_y, right_x + legend_w, bottom_y + legend_h},
                         {left_x, top_y, left_x + legend_w, top_y + legend_h}};
  double width = kWidth;
  Box legend{};
  const auto corner =
      entries.empty() ? std::begin(corners) : std::find_if(std::begin(corners), std::end(corners), vacant);
  if (corner != std::end(corners)) {
    legend = *corner;
  } else {
    legend = {kPlotRight + 16, kTop, kPlotRight + 16 + legend_w, kTop + legend_h};
    width = legend.x1 + 12;
  }

  std::ostringstream svg;
  writeHeader(svg, width, kHeight, width / 2, title);
  writeAxes(svg, ax, ay, logx, kHeight, concat("loss (smoothed, beta=", options.beta, ")"));

  svg << "<polyline clip-path=\"url(#plot)\" fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" points=\"";
  for (const auto& p : line) svg << fmt("%.2f", p.x) << ',' << fmt("%.2f", p.y) << ' ';
  svg << "\"/>\n";

  if (chosen_line) {
    svg << "<line x1=\"" << chosen_px << "\" y1=\"" << kTop << "\" x2=\"" << chosen_px << "\" y2=\"" << kPlotBottom
        << "\" stroke=\"#d62728\" stroke-dasharray=\"5,4\"/>\n"
        << "<text x=\"" << (chosen_right ? chosen_px + 8 : chosen_px - 8) << "\" y=\"" << kTop + 18
        << "\" text-anchor=\"" << (chosen_right ? "start" : "end") << "\" fill=\"#d62728\">" << chosen_label
        << "</text>\n";
  }

  for (const auto& m : markers) {
    std::string methods;
    for (std::size_t i : m.members) {
      methods += (methods.empty() ? "" : " ") + std::string(finder::toString(result.suggestions[i].method));
    }
    const bool merged = m.members.size() > 1;
    svg << "<circle class=\"marker\" data-methods=\"" << methods << "\" cx=\"" << m.at.x << "\" cy=\"" << m.at.y
        << "\" r=\"" << (m.chosen ? 7 : 5) << "\" fill=\"" << color(m.members.front()) << "\" stroke=\""
        << (merged ? "#222\" stroke-width=\"2" : "white") << "\"/>\n";
    if (merged) {
      svg << "<text class=\"marker-label\" x=\"" << m.label_box.x0 << "\" y=\"" << m.label_box.y1 - 4 << "\">"
          << m.label << "</text>\n";
    }
  }

  // Every method, in its colour, the chosen one in bold.
  if (!entries.empty()) {
    svg << "<rect class=\"legend\" x=\"" << legend.x0 << "\" y=\"" << legend.y0 << "\" width=\"" << legend_w
        << "\" height=\"" << legend_h << "\" fill=\"white\" fill-opacity=\"0.85\" stroke=\"#999\"/>\n";
  }
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const double ly = legend.y0 + 14 + 18 * static_cast<double>(i);
    const bool chosen_one = result.suggestions[i].method == result.method;
    svg << "<circle cx=\"" << legend.x0 + 12 << "\" cy=\"" << ly - 4 << "\" r=\"5\" fill=\"" << color(i) << "\"/>\n"
        << "<text x=\"" << legend.x0 + 24 << "\" y=\"" << ly << "\"" << (chosen_one ? " font-weight=\"bold\"" : "")
        << ">" << entries[i] << "</text>\n";
  }
  svg << "</svg>\n";
  return svg.str();
}

std::string renderSummary(const finder::SweepResult& result, const finder::SweepOptions& options) {
  std::ostringstream os;
  const auto n = result.stepsCompleted();
  os << "lrfind: " << n << " of " << options.num_training << " steps, stop reason: "
     << finder::toString(result.stop_reason);
  if (result.stop_test == "shift") os << " (the shift test: the best loss was 1e-8 or less)";
  if (n > 0) os << " (last lr " << formatLr(result.lr.back()) << ")";
  if (!result.eval_seconds.empty()) {
    char seconds[32];
    std::snprintf(seconds, sizeof seconds, "%.3g", upperMedian(result.eval_seconds));
    os << "\nmonitor: " << (options.monitor == finder::Monitor::kVal ? "validation" : "training")
       << " loss; evaluating the held-out data took " << seconds << " s per step (median)";
  }
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
    if (!result.suggestion_warning.empty()) os << "warning: " << result.suggestion_warning << "\n";
  } else {
    os << "no suggestion: " << chosen.note << "\n";
  }
  return os.str();
}

std::string renderGroupLrs(const finder::SweepResult& result, const RunInfo& info) {
  const auto& chosen = result.suggestion();
  if (info.param_groups.size() < 2 || !chosen.found) return "";
  std::string out = "  lr per param group at the suggestion:\n";
  for (const auto& g : info.param_groups) {
    char line[256];
    std::snprintf(line, sizeof line, "    %-24s x%-6g %-11s (%zu parameter(s), weight decay %g)\n",
                  g.pattern.empty() ? "(default)" : g.pattern.c_str(), g.multiplier,
                  formatLr(chosen.lr * g.multiplier).c_str(), g.names.size(), g.weight_decay);
    out += line;
  }
  return out;
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
