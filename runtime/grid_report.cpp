#include "runtime/grid_report.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/string.h"
#include "lrfind/config.h"
#include "runtime/format.h"
#include "runtime/report_util.h"

namespace lrfind::runtime {
namespace {

// Insertion order kept: a sweep's values read in grid order, like its label.
using Json = nlohmann::ordered_json;

// The plot's pieces and the JSON numbers, shared with report.cpp.
using namespace report_util;

template <typename T>
Json array(const std::vector<T>& v) {
  auto out = Json::array();
  for (const auto& x : v) out.push_back(x);
  return out;
}

// The chosen suggestion of a sweep; nullptr when it has none (a sweep cut short before
// its suggestions were computed has an empty list, where SweepResult::suggestion()
// throws).
const finder::Suggestion* chosen(const finder::SweepResult& result) {
  for (const auto& s : result.suggestions) {
    if (s.method == result.method) return &s;
  }
  return nullptr;
}

bool found(const finder::Suggestion* s) { return s != nullptr && s->found && std::isfinite(s->lr) && s->lr > 0; }

std::string valueOf(const GridSweep& sweep, const std::string& axis) {
  for (const auto& [name, value] : sweep.values) {
    if (name == axis) return value;
  }
  return "";
}

// "optimizer (2) x seed (4)"
std::string axesText(const std::vector<GridAxis>& axes) {
  std::string out;
  for (const auto& a : axes) out += concat(out.empty() ? "" : " x ", a.name, " (", a.values.size(), ")");
  return out;
}

// The chosen method when every sweep shares it (the method is not a grid axis, but a
// table should not claim so for a mixture).
const char* sharedMethod(const std::vector<GridSweep>& sweeps) {
  if (sweeps.empty()) return nullptr;
  for (const auto& s : sweeps) {
    if (s.result.method != sweeps.front().result.method) return nullptr;
  }
  return finder::toString(sweeps.front().result.method);
}

}  // namespace

std::string renderGridSummary(const std::vector<GridAxis>& axes, const std::vector<GridSweep>& sweeps,
                              const GridSummary& summary) {
  std::ostringstream os;
  const char* method = sharedMethod(sweeps);
  os << "lrfind grid: " << sweeps.size() << (sweeps.size() == 1 ? " sweep" : " sweeps");
  if (!axes.empty()) os << " over " << axesText(axes);
  os << "\n";
  if (sweeps.empty()) return os.str();

  // The table: headers, then a row per sweep; numbers right-aligned, words left-aligned.
  struct Column {
    std::string header;
    bool right;
    std::vector<std::string> cells;
  };
  std::vector<Column> columns;
  columns.push_back({"sweep", true, {}});
  for (const auto& a : axes) columns.push_back({a.name, false, {}});
  columns.push_back({method != nullptr ? concat("lr (", method, ")") : std::string("suggested lr"), false, {}});
  columns.push_back({"stop reason", false, {}});
  columns.push_back({"steps", true, {}});
  columns.push_back({"group", true, {}});
  for (const auto& s : sweeps) {
    std::size_t c = 0;
    columns[c++].cells.push_back(std::to_string(s.index));
    for (const auto& a : axes) columns[c++].cells.push_back(valueOf(s, a.name));
    const auto* suggestion = chosen(s.result);
    std::string lr = found(suggestion) ? formatLr(suggestion->lr) : "-";
    if (method == nullptr && found(suggestion)) lr += concat(" (", finder::toString(suggestion->method), ")");
    columns[c++].cells.push_back(lr);
    columns[c++].cells.push_back(finder::toString(s.result.stop_reason));
    columns[c++].cells.push_back(std::to_string(s.result.stepsCompleted()));
    columns[c++].cells.push_back(std::to_string(s.group));
  }
  std::vector<std::size_t> widths;
  for (const auto& col : columns) {
    std::size_t w = col.header.size();
    for (const auto& cell : col.cells) w = std::max(w, cell.size());
    widths.push_back(w);
  }
  auto row = [&](auto&& text) {
    std::string line;
    for (std::size_t c = 0; c < columns.size(); ++c) {
      const std::string t = text(c);
      const std::string pad(widths[c] - t.size(), ' ');
      line += "  ";
      line += columns[c].right ? pad + t : t + pad;
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    os << line << "\n";
  };
  row([&](std::size_t c) { return columns[c].header; });
  for (std::size_t r = 0; r < sweeps.size(); ++r) row([&](std::size_t c) { return columns[c].cells[r]; });

  for (const auto& g : summary.seed_groups) {
    os << "seed group" << (g.label.empty() ? "" : " ") << g.label << ": ";
    if (g.found == 0) {
      os << "no suggestion in any of " << g.sweeps.size() << " seeds\n";
      continue;
    }
    os << "median lr " << formatLr(g.median_lr) << " over " << g.found << "/" << g.sweeps.size()
       << " seeds, log10 lr " << fmt("%.2f", g.log10_min) << " .. " << fmt("%.2f", g.log10_max) << ", IQR "
       << fmt("%.2f", g.log10_iqr) << "\n";
  }
  bool fitted = false;
  for (const auto& f : summary.batch_fits) {
    os << "batch-size fit" << (f.label.empty() ? "" : " ") << f.label << ": ";
    const std::size_t points = f.sweeps.size();
    const std::string count = concat(points, points == 1 ? " point" : " points");
    if (!std::isfinite(f.alpha)) {
      os << "needs suggestions at two batch sizes or more (" << count << ")\n";
      continue;
    }
    fitted = true;
    os << "lr* ~ B^" << fmt("%.2f", f.alpha) << " (residual " << fmt("%.3f", f.residual) << " in log10 lr, "
       << count << ")\n";
  }
  if (fitted) {
    os << "  (B: the global batch size; alpha ~ 1 is the linear scaling rule, lr in proportion to B; "
          "alpha ~ 0.5 the square-root rule)\n";
  }
  return os.str();
}

std::string renderGridJson(const std::vector<GridAxis>& axes, const std::vector<GridSweep>& sweeps,
                           const GridSummary& summary, const std::string& results_path,
                           const std::string& config_toml, finder::StopReason stop, const std::string& error) {
  Json j;
  j["lrfind_version"] = LRFIND_VERSION;
  j["stop_reason"] = finder::toString(stop);
  if (!error.empty()) j["error"] = error;
  j["results"] = results_path;
  auto axes_json = Json::array();
  for (const auto& a : axes) axes_json.push_back({{"name", a.name}, {"values", array(a.values)}});
  j["axes"] = axes_json;

  auto sweeps_json = Json::array();
  for (const auto& s : sweeps) {
    Json values = Json::object();
    for (const auto& [axis, value] : s.values) values[axis] = value;
    Json suggestions = Json::object();
    for (const auto& sg : s.result.suggestions) {
      suggestions[finder::toString(sg.method)] = {{"lr", sg.found ? number<Json>(sg.lr) : Json()}};
    }
    const auto* c = chosen(s.result);
    Json sweep = {{"index", s.index},
                  {"values", values},
                  {"group", s.group},
                  {"started_at", s.started_at},
                  {"ended_at", s.ended_at},
                  {"steps_completed", s.result.stepsCompleted()},
                  {"stop_reason", finder::toString(s.result.stop_reason)},
                  {"stop_rule", s.result.stop_test}};
    if (!s.result.error.empty()) sweep["error"] = s.result.error;
    if (!s.result.suggestion_warning.empty()) sweep["suggestion_warning"] = s.result.suggestion_warning;
    sweep["suggested_lr"] = found(c) ? number<Json>(c->lr) : Json();
    sweep["suggest_method"] = finder::toString(s.result.method);
    sweep["suggestions"] = suggestions;
    sweep["global_batch_size"] = s.info.global_batch_size;
    sweep["world_size"] = s.info.world_size;
    sweeps_json.push_back(sweep);
  }
  j["sweeps"] = sweeps_json;

  auto groups = Json::array();
  for (const auto& g : summary.seed_groups) {
    groups.push_back({{"label", g.label},
                      {"sweeps", array(g.sweeps)},
                      {"found", g.found},
                      {"median_lr", number<Json>(g.median_lr)},
                      {"log10_min", number<Json>(g.log10_min)},
                      {"log10_max", number<Json>(g.log10_max)},
                      {"log10_iqr", number<Json>(g.log10_iqr)},
                      {"band",
                       {{"lr", series<Json>(g.lr)},
                        {"loss_min", series<Json>(g.loss_min)},
                        {"loss_max", series<Json>(g.loss_max)},
                        {"loss_median", series<Json>(g.loss_median)}}}});
  }
  j["seed_groups"] = groups;
  auto fits = Json::array();
  for (const auto& f : summary.batch_fits) {
    fits.push_back({{"label", f.label},
                    {"sweeps", array(f.sweeps)},
                    {"batch", series<Json>(f.batch)},
                    {"lr", series<Json>(f.lr)},
                    {"alpha", number<Json>(f.alpha)},
                    {"intercept", number<Json>(f.intercept)},
                    {"residual", number<Json>(f.residual)}});
  }
  j["batch_fits"] = fits;
  if (!config_toml.empty()) j["config_toml"] = config_toml;
  return j.dump(2) + "\n";
}

namespace {

// Tableau's ten colours; past ten, the cycle repeats with a dash pattern, so that
// sweep 0 and sweep 10 still look different.
constexpr const char* kColors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                   "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
constexpr std::size_t kNumColors = sizeof kColors / sizeof kColors[0];
constexpr const char* kDashes[] = {"", "6,3", "2,2", "8,3,2,3"};

const char* color(std::size_t i) { return kColors[i % kNumColors]; }
std::string dash(std::size_t i) {
  const char* d = kDashes[(i / kNumColors) % (sizeof kDashes / sizeof kDashes[0])];
  return *d == '\0' ? std::string() : concat(" stroke-dasharray=\"", d, "\"");
}

struct LegendEntry {
  std::string text;
  std::size_t color;
  bool band;  // a seed group: a filled swatch under the line
};

}  // namespace

std::string renderGridSvg(const std::vector<GridAxis>& axes, const std::vector<GridSweep>& sweeps,
                          const GridSummary& summary) {
  constexpr double kPlotWidth = 760, kMinHeight = 460;
  constexpr double kLeft = 80, kTop = 50, kBottom = 60, kLegendGap = 16, kLegendRow = 18;
  constexpr double kPlotRight = kPlotWidth - 30;
  const bool logx = !sweeps.empty() && std::all_of(sweeps.begin(), sweeps.end(), [](const GridSweep& s) {
    return s.options.mode == finder::Mode::kExponential;
  });
  auto usable = [&](double lr) { return std::isfinite(lr) && (!logx || lr > 0); };
  auto xval = [&](double lr) { return logx ? std::log10(lr) : lr; };
  const bool grouped = !summary.seed_groups.empty();

  // Each sweep's colour: its own, or its seed group's.
  std::vector<std::size_t> hue(sweeps.size());
  for (std::size_t i = 0; i < sweeps.size(); ++i) {
    hue[i] = i;
    for (std::size_t g = 0; g < summary.seed_groups.size(); ++g) {
      const auto& members = summary.seed_groups[g].sweeps;
      if (std::find(members.begin(), members.end(), sweeps[i].index) != members.end()) hue[i] = g;
    }
  }

  // Ranges. x: every finite point and every chosen suggestion. y: from the lowest loss
  // to the highest, each curve without its last skip_end points (the divergence that
  // stopped it), and at most twice the largest starting drop above the highest start, so
  // that one diverging sweep does not flatten the others.
  double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY, start_hi = -INFINITY;
  for (const auto& s : sweeps) {
    const auto& r = s.result;
    const std::size_t n = std::min(r.lr.size(), r.loss.size());
    const auto keep = static_cast<std::size_t>(std::max<int64_t>(1, static_cast<int64_t>(n) - s.options.skip_end));
    bool first = true;
    for (std::size_t k = 0; k < n; ++k) {
      if (!std::isfinite(r.loss[k]) || !usable(r.lr[k])) continue;
      xlo = std::min(xlo, xval(r.lr[k]));
      xhi = std::max(xhi, xval(r.lr[k]));
      if (first) start_hi = std::max(start_hi, r.loss[k]);
      first = false;
      if (k < keep) {
        ylo = std::min(ylo, r.loss[k]);
        yhi = std::max(yhi, r.loss[k]);
      }
    }
    const auto* c = chosen(r);
    if (found(c) && usable(c->lr)) {
      xlo = std::min(xlo, xval(c->lr));
      xhi = std::max(xhi, xval(c->lr));
    }
  }
  if (start_hi > ylo) yhi = std::min(yhi, start_hi + 2 * (start_hi - ylo));

  std::string title = concat("LR range test grid: ", sweeps.size(), sweeps.size() == 1 ? " sweep" : " sweeps");
  if (!axes.empty()) title += concat(" over ", axesText(axes));
  title = escape(title);

  // The legend, to the right of the plot: a grid can have many entries.
  std::vector<LegendEntry> entries;
  if (grouped) {
    for (std::size_t g = 0; g < summary.seed_groups.size(); ++g) {
      const auto& sg = summary.seed_groups[g];
      entries.push_back({concat(sg.label.empty() ? std::string("all seeds") : sg.label, ": median ",
                                formatLr(sg.median_lr), " (", sg.found, "/", sg.sweeps.size(), " seeds)"),
                         g, true});
    }
  } else {
    for (std::size_t i = 0; i < sweeps.size(); ++i) {
      const std::string label = axisLabel(sweeps[i], "");
      const auto* c = chosen(sweeps[i].result);
      entries.push_back({concat(label.empty() ? concat("sweep ", sweeps[i].index) : label, ": ",
                                found(c) ? formatLr(c->lr) : std::string("none")),
                         hue[i], false});
    }
  }
  double legend_w = 0;
  for (const auto& e : entries) legend_w = std::max(legend_w, 36 + textWidth(e.text) + 8);
  const double legend_h = kLegendRow * static_cast<double>(entries.size()) + 8;
  const double width = entries.empty() ? kPlotWidth : kPlotRight + kLegendGap + legend_w + 12;
  const double height = std::max(kMinHeight, kTop + legend_h + kBottom);
  const double plot_bottom = height - kBottom;

  std::ostringstream svg;
  writeHeader(svg, width, height, kPlotWidth / 2, title);
  if (!(ylo <= yhi) || !(xlo <= xhi)) {
    writeNothingToPlot(svg, kPlotWidth / 2, height / 2);
    return svg.str();
  }
  widenFlatLossRange(ylo, yhi);
  if (!(xhi > xlo)) {
    const double pad = logx ? 0.5 : std::max(std::abs(xlo) * 0.05, 1e-12);
    xlo -= pad;
    xhi += pad;
  }
  const double ypad = (yhi - ylo) * 0.05, xpad = (xhi - xlo) * 0.02;
  const Axis ax{xlo - xpad, xhi + xpad, kLeft, kPlotRight};
  const Axis ay{ylo - ypad, yhi + ypad, plot_bottom, kTop};
  // Points far outside the range are drawn at its edge plus a margin: the clip path hides
  // them, and a loss of 1e30 does not become a coordinate of 1e30 pixels.
  const double yspan = ay.hi - ay.lo;
  auto px = [&](double lr) { return fmt("%.2f", ax.map(xval(lr))); };
  auto py = [&](double loss) { return fmt("%.2f", ay.map(std::clamp(loss, ay.lo - yspan, ay.hi + yspan))); };

  writeAxes(svg, ax, ay, logx, height, "loss (smoothed)");

  // Bands first, under every line.
  for (std::size_t g = 0; g < summary.seed_groups.size(); ++g) {
    const auto& sg = summary.seed_groups[g];
    std::vector<std::size_t> ks;
    for (std::size_t k = 0; k < sg.lr.size(); ++k) {
      if (usable(sg.lr[k]) && std::isfinite(sg.loss_min[k]) && std::isfinite(sg.loss_max[k])) ks.push_back(k);
    }
    if (ks.empty()) continue;
    svg << "<polygon class=\"band\" data-group=\"" << g << "\" clip-path=\"url(#plot)\" fill=\"" << color(g)
        << "\" fill-opacity=\"0.18\" stroke=\"none\" points=\"";
    for (std::size_t k : ks) svg << px(sg.lr[k]) << ',' << py(sg.loss_max[k]) << ' ';
    for (auto it = ks.rbegin(); it != ks.rend(); ++it) svg << px(sg.lr[*it]) << ',' << py(sg.loss_min[*it]) << ' ';
    svg << "\"/>\n";
  }

  // One polyline per sweep, even one without a finite point (empty), so that tools can
  // count the sweeps.
  for (std::size_t i = 0; i < sweeps.size(); ++i) {
    const auto& r = sweeps[i].result;
    svg << "<polyline class=\"curve\" data-sweep=\"" << sweeps[i].index << "\" clip-path=\"url(#plot)\" fill=\"none\" "
        << "stroke=\"" << color(hue[i]) << "\""
        << (grouped ? " stroke-width=\"1\" stroke-opacity=\"0.45\"" : concat(" stroke-width=\"1.8\"", dash(hue[i])))
        << " points=\"";
    for (std::size_t k = 0; k < r.lr.size() && k < r.loss.size(); ++k) {
      if (std::isfinite(r.loss[k]) && usable(r.lr[k])) svg << px(r.lr[k]) << ',' << py(r.loss[k]) << ' ';
    }
    svg << "\"/>\n";
  }

  // Each group's median curve, thick, over its seeds.
  for (std::size_t g = 0; g < summary.seed_groups.size(); ++g) {
    const auto& sg = summary.seed_groups[g];
    svg << "<polyline class=\"median\" data-group=\"" << g << "\" clip-path=\"url(#plot)\" fill=\"none\" stroke=\""
        << color(g) << "\" stroke-width=\"2.5\"" << dash(g) << " points=\"";
    for (std::size_t k = 0; k < sg.lr.size(); ++k) {
      if (usable(sg.lr[k]) && std::isfinite(sg.loss_median[k])) {
        svg << px(sg.lr[k]) << ',' << py(sg.loss_median[k]) << ' ';
      }
    }
    svg << "\"/>\n";
  }

  // Each sweep's chosen suggestion on its own curve, at its nearest recorded step.
  for (std::size_t i = 0; i < sweeps.size(); ++i) {
    const auto& r = sweeps[i].result;
    const auto* c = chosen(r);
    if (!found(c) || !usable(c->lr)) continue;
    const int64_t at = nearestStep(r.lr, c->lr, logx, &r.loss);
    if (at < 0) continue;
    svg << "<circle class=\"marker\" data-sweep=\"" << sweeps[i].index << "\" cx=\"" << px(c->lr) << "\" cy=\""
        << fmt("%.2f", ay.map(std::clamp(r.loss[static_cast<std::size_t>(at)], ay.lo, ay.hi))) << "\" r=\""
        << (grouped ? 3.5 : 5) << "\" fill=\"" << color(hue[i]) << "\" stroke=\"white\"/>\n";
  }
  // And each group's median lr on its median curve, larger, with a dark ring.
  for (std::size_t g = 0; g < summary.seed_groups.size(); ++g) {
    const auto& sg = summary.seed_groups[g];
    if (!usable(sg.median_lr)) continue;
    const int64_t at = nearestStep(sg.lr, sg.median_lr, logx, &sg.loss_median);
    if (at < 0) continue;
    svg << "<circle class=\"group-marker\" data-group=\"" << g << "\" cx=\"" << px(sg.median_lr) << "\" cy=\""
        << fmt("%.2f", ay.map(std::clamp(sg.loss_median[static_cast<std::size_t>(at)], ay.lo, ay.hi)))
        << "\" r=\"6\" fill=\"" << color(g) << "\" stroke=\"#222\" stroke-width=\"2\"/>\n";
  }

  if (!entries.empty()) {
    const double lx = kPlotRight + kLegendGap;
    svg << "<rect class=\"legend\" x=\"" << lx << "\" y=\"" << kTop << "\" width=\"" << legend_w << "\" height=\""
        << legend_h << "\" fill=\"white\" stroke=\"#999\"/>\n";
    for (std::size_t i = 0; i < entries.size(); ++i) {
      const auto& e = entries[i];
      const double y = kTop + 14 + kLegendRow * static_cast<double>(i);
      if (e.band) {
        svg << "<rect x=\"" << lx + 8 << "\" y=\"" << y - 10 << "\" width=\"20\" height=\"12\" fill=\""
            << color(e.color) << "\" fill-opacity=\"0.18\"/>\n";
      }
      svg << "<line x1=\"" << lx + 8 << "\" y1=\"" << y - 4 << "\" x2=\"" << lx + 28 << "\" y2=\"" << y - 4
          << "\" stroke=\"" << color(e.color) << "\" stroke-width=\"" << (e.band ? 2.5 : 1.8) << "\""
          << dash(e.color) << "/>\n"
          << "<text class=\"legend-entry\" x=\"" << lx + 36 << "\" y=\"" << y << "\">" << escape(e.text)
          << "</text>\n";
    }
  }
  svg << "</svg>\n";
  return svg.str();
}

}  // namespace lrfind::runtime
