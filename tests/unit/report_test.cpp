#include "runtime/report.h"

// The reports compile without HDF5: report.h reaches no <hdf5.h>.
#ifdef H5_VERS_MAJOR
#error "runtime/report.h pulls in <hdf5.h>"
#endif

#include <cmath>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "finder/suggest.h"
#include "runtime/format.h"
#include "unit/report_test_util.h"
#include "unit/run_fixture.h"

namespace lrfind::runtime {
namespace {

using testing::attr;
using testing::curveOf;
using testing::elements;
using testing::lines;

finder::SweepOptions options() { return testing::sampleOptions(); }
RunInfo info() { return testing::sampleRunInfo(); }

// A range-test-like curve: flat, then falling; `last_loss` replaces the final point
// when given.
finder::SweepResult curve(const finder::SweepOptions& o, std::optional<double> last_loss = std::nullopt) {
  return curveOf(o, [&](int k) { return k == 29 && last_loss ? *last_loss : 2.0 - std::tanh((k - 15) / 4.0); });
}

// --- SVG parsing: the elements the tests look at carry a class.

double num(const std::string& element, const std::string& name) { return std::stod(attr(element, name)); }

struct Rect {
  double x0, y0, x1, y1;
  bool contains(double x, double y) const { return x >= x0 && x <= x1 && y >= y0 && y <= y1; }
};

Rect rectOf(const std::string& element) {
  const double x = num(element, "x"), y = num(element, "y");
  return {x, y, x + num(element, "width"), y + num(element, "height")};
}

struct Xy {
  double x, y;
};

std::vector<Xy> polyline(const std::string& svg) {
  const auto lines = elements(svg, "<polyline");
  EXPECT_EQ(lines.size(), 1u);
  std::vector<Xy> pts;
  std::istringstream in(attr(lines.at(0), "points"));
  for (std::string pair; in >> pair;) {
    const auto comma = pair.find(',');
    pts.push_back({std::stod(pair.substr(0, comma)), std::stod(pair.substr(comma + 1))});
  }
  return pts;
}

// The first point of the drawn curve, between two recorded points too, inside `r`
// (checked every 0.25 px, independently of the plot's own clipping arithmetic); an
// empty string when there is none.
std::string curveInside(const std::vector<Xy>& pts, const Rect& r) {
  for (std::size_t k = 0; k + 1 < pts.size(); ++k) {
    const double len = std::hypot(pts[k + 1].x - pts[k].x, pts[k + 1].y - pts[k].y);
    const int steps = std::max(1, static_cast<int>(len * 4));
    for (int i = 0; i <= steps; ++i) {
      const double t = static_cast<double>(i) / steps;
      const double x = pts[k].x + t * (pts[k + 1].x - pts[k].x), y = pts[k].y + t * (pts[k + 1].y - pts[k].y);
      if (r.contains(x, y)) return "(" + std::to_string(x) + ", " + std::to_string(y) + ")";
    }
  }
  return "";
}

TEST(Report, JsonAndSvgCarryTheSuggestion) {
  const auto o = options();
  const auto r = curve(o);
  const auto& s = r.suggestion();
  ASSERT_TRUE(s.found);
  const std::string json = renderJson(r, o, info(), "r.h5");
  EXPECT_NE(json.find("\"suggested_lr\": " + std::to_string(s.lr).substr(0, 4)), std::string::npos) << json;
  EXPECT_NE(json.find("\"valley\""), std::string::npos);
  const std::string svg = renderSvg(r, o, info());
  EXPECT_NE(svg.find("<svg"), std::string::npos);
  EXPECT_NE(svg.find("suggested lr " + formatLr(s.lr)), std::string::npos);
  EXPECT_NE(svg.find("learning rate (log scale)"), std::string::npos);
  EXPECT_NE(svg.find(">1e-3<"), std::string::npos) << "decade ticks";
  const std::string summary = renderSummary(r, o);
  EXPECT_NE(summary.find("suggested lr: " + formatLr(s.lr)), std::string::npos) << summary;
}

// The JSON config says what the HDF5 "config" attribute says: the TOML itself, and
// every key of it, typed; the facts resolved at run time keep their resolved values.
TEST(Report, JsonConfigCarriesEveryKeyOfTheToml) {
  const auto o = options();
  const auto r = curve(o);
  RunInfo with = info();
  // As lrfind_dist --write-config prints it (CLI11's config_to_str).
  with.config =
      "model=\"mlp\"\n"
      "data=\"synthetic\"\n"
      "loss=\"cross_entropy\"\n"
      "optimizer=\"sgd\"\n"
      "momentum=0.9\n"
      "nesterov=false\n"
      "weight-decay=0.01\n"
      "betas=\"0.9,0.999\"\n"
      "eps=\"auto\"\n"
      "batch-size=16\n"
      "min-lr=0.0001\n"
      "max-lr=1\n"
      "num-training=30\n"
      "mode=\"exponential\"\n"
      "early-stop-threshold=4.0\n"
      "device=\"auto\"\n"
      "seed=9\n"
      "plot=\"\"\n"
      "label='say \"hi\"'\n"
      "sizes=[1,2.5,\"x\"]\n";
  const auto j = nlohmann::json::parse(renderJson(r, o, with, "r.h5"));
  EXPECT_EQ(j.at("config_toml"), with.config);
  const auto& c = j.at("config");
  std::istringstream lines(with.config);
  for (std::string line; std::getline(lines, line);) {
    std::string key = line.substr(0, line.find('='));
    for (char& ch : key) ch = ch == '-' ? '_' : ch;
    EXPECT_TRUE(c.find(key) != c.end()) << key << " missing from\n" << c.dump(2);
  }
  EXPECT_EQ(c.at("momentum"), 0.9);
  EXPECT_EQ(c.at("nesterov"), false);
  EXPECT_EQ(c.at("weight_decay"), 0.01);
  EXPECT_EQ(c.at("betas"), "0.9,0.999");
  EXPECT_EQ(c.at("eps"), "auto");
  EXPECT_EQ(c.at("loss"), "cross_entropy");
  EXPECT_EQ(c.at("plot"), "");
  EXPECT_EQ(c.at("label"), "say \"hi\"");
  EXPECT_EQ(c.at("sizes"), nlohmann::json::parse("[1, 2.5, \"x\"]"));
  EXPECT_TRUE(c.at("num_training").is_number_integer());
  // Existing keys keep their names and values; the resolved device wins over "auto".
  EXPECT_EQ(c.at("device"), "cpu");
  EXPECT_EQ(c.at("min_lr"), 1e-4);
  EXPECT_EQ(c.at("max_lr"), 1.0);
  EXPECT_EQ(c.at("early_stop_threshold"), 4.0);
  EXPECT_EQ(c.at("batch_size"), 16);
  EXPECT_EQ(c.at("global_batch_size"), 32);
  EXPECT_EQ(c.at("world_size"), 2);
  EXPECT_EQ(c.at("loss_fn"), "cross_entropy");

  // Library callers have no TOML: the config is the options and the facts, as before.
  const auto bare = nlohmann::json::parse(renderJson(r, o, info(), "r.h5"));
  EXPECT_TRUE(bare.find("config_toml") == bare.end());
  std::vector<std::string> keys;
  for (const auto& item : bare.at("config").items()) keys.push_back(item.key());
  EXPECT_EQ(keys, (std::vector<std::string>{"accumulate", "batch_size", "beta", "channels_last", "data", "device",
                                            "early_stop_threshold", "global_batch_size", "input_scale", "input_type",
                                            "labels", "loss_fn", "max_lr", "min_lr", "mode", "model", "monitor",
                                            "normalize", "num_training", "optimizer", "precision", "seed", "skip_begin",
                                            "skip_end", "world_size"}));
}

// Validation mode: the held-out data in the config, val_loss beside the curve, the
// evaluation's time, and a line in the summary.
TEST(Report, ValidationModeIsInTheJsonAndTheSummary) {
  auto o = options();
  o.monitor = finder::Monitor::kVal;
  auto r = curve(o, 1.0);
  r.val_loss.assign(r.lr.size(), 0.5);
  r.eval_seconds.assign(r.lr.size(), 0.25);
  r.step_seconds.assign(r.lr.size(), 1.0);
  RunInfo with = info();
  with.val_data = "d.h5 rows 800-999 (--val-fraction 0.2)";
  with.val_samples = 200;
  const auto j = nlohmann::json::parse(renderJson(r, o, with, "r.h5"));
  EXPECT_EQ(j.at("config").at("monitor"), "val");
  EXPECT_EQ(j.at("config").at("val_data"), with.val_data);
  EXPECT_EQ(j.at("config").at("val_samples"), 200);
  EXPECT_EQ(j.at("config").at("val_batches"), 0);
  EXPECT_EQ(j.at("curve").at("val_loss").size(), r.lr.size());
  EXPECT_EQ(j.at("timing").at("eval_seconds_per_step_median"), 0.25);
  EXPECT_NE(renderSummary(r, o).find("monitor: validation loss; evaluating the held-out data took 0.25 s per step"),
            std::string::npos)
      << renderSummary(r, o);
  // Without validation there is no such line.
  EXPECT_EQ(renderSummary(curve(options(), 1.0), options()).find("monitor:"), std::string::npos);
}

// Every method on the plot, in the legend, the chosen one named as such.
TEST(Report, SvgMarksEveryMethodWithALegend) {
  const auto o = options();
  const auto r = curve(o, 1.0);
  const std::string svg = renderSvg(r, o, info());
  for (const auto& s : r.suggestions) {
    const std::string entry = std::string(finder::toString(s.method)) + ": " + (s.found ? formatLr(s.lr) : "none");
    EXPECT_NE(svg.find(entry), std::string::npos) << entry << "\n" << svg;
  }
  EXPECT_NE(svg.find(std::string(finder::toString(r.method)) + ": " + formatLr(r.suggestion().lr) + " (chosen)"),
            std::string::npos);
}

// The legend never covers the curve: in a free corner, or beside the plot when the
// curve leaves none.
TEST(Report, SvgLegendLeavesTheCurveVisible) {
  const auto o = options();
  struct Case {
    const char* name;
    finder::SweepResult result;
    bool outside;  // no corner is free
  };
  const Case cases[] = {
      {"sits low: falls at once, then flat along the bottom",
       curveOf(o, [](int k) { return 0.2 + 3.0 * std::exp(-k / 1.5); }), false},
      {"low on the left, rising to the right", curveOf(o, [](int k) { return 1.0 + 0.05 * k; }), false},
      {"range test: flat, falling", curve(o), false},
      {"zigzag over the whole plot", curveOf(o, [](int k) { return k % 2 == 0 ? 1.0 : 2.0; }), true},
  };
  for (const auto& c : cases) {
    const std::string svg = renderSvg(c.result, o, info());
    const auto legends = elements(svg, "<rect class=\"legend\"");
    ASSERT_EQ(legends.size(), 1u) << c.name;
    const Rect legend = rectOf(legends[0]);
    const Rect axes = rectOf(elements(svg, "<rect class=\"axes\"").at(0));
    EXPECT_EQ(curveInside(polyline(svg), legend), "") << c.name << ": the curve runs under the legend\n" << svg;
    for (const auto& m : elements(svg, "<circle class=\"marker\"")) {
      EXPECT_FALSE(legend.contains(num(m, "cx"), num(m, "cy"))) << c.name << ": " << m;
    }
    const double width = num(elements(svg, "<svg").at(0), "width");
    EXPECT_LE(legend.x1, width) << c.name;
    if (c.outside) {
      EXPECT_GE(legend.x0, axes.x1) << c.name << ": beside the plot";
      EXPECT_GT(width, 760) << c.name << ": the picture grows to hold it";
    } else {
      EXPECT_TRUE(axes.contains(legend.x0, legend.y0) && axes.contains(legend.x1, legend.y1)) << c.name;
      EXPECT_EQ(width, 760) << c.name;
    }
  }
  // The low curve leaves both bottom corners covered: the legend is at the top.
  const std::string low = renderSvg(cases[0].result, o, info());
  const Rect legend = rectOf(elements(low, "<rect class=\"legend\"").at(0));
  const Rect axes = rectOf(elements(low, "<rect class=\"axes\"").at(0));
  EXPECT_LT(legend.y1, (axes.y0 + axes.y1) / 2) << low;
}

// Three points far apart, no suggestion: the flat stretch along the bottom passes under
// the bottom-left corner and the rise under the top-right one with no recorded point in
// either. Only the bottom-right corner is free.
TEST(Report, SvgLegendAvoidsTheLineBetweenPoints) {
  auto o = options();
  o.skip_end = 0;
  finder::SweepResult r;
  r.lr = {o.min_lr, std::sqrt(o.min_lr * o.max_lr), o.max_lr};
  r.loss = {1.0, 1.0, 2.0};
  r.loss_raw = r.loss;
  r.stop_reason = finder::StopReason::kCompleted;
  for (const auto m : finder::allSuggestMethods()) {
    finder::Suggestion s;
    s.method = m;
    s.note = "too few points";
    r.suggestions.push_back(s);
  }
  const std::string svg = renderSvg(r, o, info());
  const Rect legend = rectOf(elements(svg, "<rect class=\"legend\"").at(0));
  const Rect axes = rectOf(elements(svg, "<rect class=\"axes\"").at(0));
  const auto pts = polyline(svg);
  ASSERT_EQ(pts.size(), 3u);
  for (const auto& p : pts) EXPECT_FALSE(legend.contains(p.x, p.y));
  EXPECT_EQ(curveInside(pts, legend), "") << svg;
  EXPECT_GT(legend.x0, (axes.x0 + axes.x1) / 2) << "right\n" << svg;
  EXPECT_GT(legend.y0, (axes.y0 + axes.y1) / 2) << "bottom\n" << svg;
}

// fastai's `minimum` is a tenth of the lr of the lowest loss: below min_lr when the
// lowest loss is near the start. The axis reaches it, in both modes.
TEST(Report, SvgAxisHoldsEveryMarker) {
  for (const auto mode : {finder::Mode::kExponential, finder::Mode::kLinear}) {
    auto o = options();
    o.mode = mode;
    const auto r = curveOf(o, [](int k) { return 1.0 + 0.05 * k; });  // lowest at skip_begin
    const auto& minimum = r.suggestions.at(2);
    ASSERT_EQ(minimum.method, finder::SuggestMethod::kMinimum);
    ASSERT_TRUE(minimum.found);
    ASSERT_LT(minimum.lr, o.min_lr) << "the case this test is about";
    const std::string svg = renderSvg(r, o, info());
    const Rect axes = rectOf(elements(svg, "<rect class=\"axes\"").at(0));
    const auto markers = elements(svg, "<circle class=\"marker\"");
    ASSERT_FALSE(markers.empty());
    bool saw_minimum = false;
    for (const auto& m : markers) {
      const double cx = num(m, "cx"), cy = num(m, "cy"), radius = num(m, "r");
      EXPECT_TRUE(axes.contains(cx - radius, cy) && axes.contains(cx + radius, cy)) << m << "\n" << svg;
      if (attr(m, "data-methods").find("minimum") != std::string::npos) {
        saw_minimum = true;
        EXPECT_LT(cx, polyline(svg).front().x) << "left of the first recorded lr: " << m;
      }
    }
    EXPECT_TRUE(saw_minimum) << svg;
  }
}

// Suggestions at the same point share one marker that names them all; the legend
// still lists each.
TEST(Report, SvgMergesCoincidingMarkers) {
  const auto o = options();
  auto r = curve(o);
  r.method = finder::SuggestMethod::kSteepest;
  for (auto& s : r.suggestions) {
    s.found = true;
    switch (s.method) {
      case finder::SuggestMethod::kSteepest: s.index = 20; break;
      case finder::SuggestMethod::kValley: s.index = 15; break;
      case finder::SuggestMethod::kSteep: s.index = 15; break;
      case finder::SuggestMethod::kMinimum: s.index = 8; break;
      case finder::SuggestMethod::kSlide: s.index = 25; break;
    }
    s.lr = r.lr[static_cast<std::size_t>(s.index)];
  }
  // Not the same lr, but a hair apart: the same pixel.
  r.suggestions.at(3).lr *= 1.001;
  const std::string svg = renderSvg(r, o, info());
  const auto markers = elements(svg, "<circle class=\"marker\"");
  EXPECT_EQ(markers.size(), 4u) << svg;
  int merged = 0;
  for (const auto& m : markers) {
    if (attr(m, "data-methods") == "valley steep") ++merged;
  }
  EXPECT_EQ(merged, 1) << svg;
  EXPECT_NE(svg.find(">valley, steep</text>"), std::string::npos) << "the marker names both";
  EXPECT_NE(svg.find("valley: " + formatLr(r.suggestions[1].lr)), std::string::npos) << "legend per method";
  EXPECT_NE(svg.find("steep: " + formatLr(r.suggestions[3].lr)), std::string::npos) << "legend per method";
  // No two markers left on top of each other.
  for (std::size_t a = 0; a < markers.size(); ++a) {
    for (std::size_t b = a + 1; b < markers.size(); ++b) {
      const double gap =
          std::hypot(num(markers[a], "cx") - num(markers[b], "cx"), num(markers[a], "cy") - num(markers[b], "cy"));
      EXPECT_GE(gap, 6.0) << markers[a] << " " << markers[b];
    }
  }
}

// The text plot for batch logs: `height` rows, the suggestion's column marked, and
// points outside the range (the last one, left out of it) clamped to an edge.
TEST(Report, TextPlotKeepsEveryPointInsideTheFrame) {
  const auto o = options();
  for (const double last : {-50.0, 1.0, 50.0}) {
    const auto r = curve(o, last);
    const std::string plot = renderTextPlot(r, o, 40, 8);
    const auto rows = lines(plot);
    ASSERT_EQ(rows.size(), 1u + 8u + 2u + 1u) << plot;  // title, rows, axis, labels, marker
    for (int row = 1; row <= 8; ++row) EXPECT_EQ(rows[row].size(), 14u + 40u) << plot;  // label, ' |', columns
    EXPECT_NE(rows.back().find("^ " + formatLr(r.suggestion().lr)), std::string::npos) << plot;
    if (last < 0) {
      EXPECT_NE(rows[8].find('v'), std::string::npos) << plot;
    }
    if (last > 10) {
      EXPECT_NE(rows[1].find('^'), std::string::npos) << plot;
    }
  }
  finder::SweepResult empty;
  EXPECT_NE(renderTextPlot(empty, o).find("no finite loss"), std::string::npos);
}

}  // namespace
}  // namespace lrfind::runtime
