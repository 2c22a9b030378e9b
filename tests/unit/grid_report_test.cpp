// runtime/grid_report: the grid's console table, JSON and SVG.

#include "runtime/grid_report.h"

// The grid's reports compile without HDF5, like report.h.
#ifdef H5_VERS_MAJOR
#error "runtime/grid_report.h pulls in <hdf5.h>"
#endif

#include <algorithm>
#include <cmath>
#include <regex>
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
using testing::elements;
using testing::lines;

// A range-test-like curve (testing::curveOf), flat then falling, the fall at step `at`
// and `scale` times as deep.
finder::SweepResult curve(const finder::SweepOptions& o, double at, double scale = 1) {
  return testing::curveOf(o, [&](int k) { return 2.0 - scale * std::tanh((k - at) / 4.0); });
}

// The sweeps of `axes` in grid order, sweep i's curve falling at step 10 + i; sweeps
// listed in `cut` stopped by an error before any suggestion.
std::vector<GridSweep> sweepsOf(const std::vector<GridAxis>& axes, const std::vector<std::size_t>& cut = {}) {
  std::vector<GridSweep> sweeps;
  for (const auto& point : gridPoints(axes)) {
    GridSweep s;
    s.index = point.index;
    s.values = point.values;
    s.group = static_cast<int>(point.index % 2);
    s.started_at = 1.7e9 + 10 * static_cast<double>(point.index);
    s.ended_at = s.started_at + 5;
    s.info = testing::sampleRunInfo();
    s.options = testing::sampleOptions();
    for (const auto& [axis, value] : s.values) {
      if (axis == "batch-size") s.info.global_batch_size = 2 * std::stoll(value);
    }
    s.result = curve(s.options, 10 + static_cast<double>(point.index % 8));
    if (std::find(cut.begin(), cut.end(), point.index) != cut.end()) {
      s.result.lr.resize(4);
      s.result.loss.resize(4);
      s.result.loss_raw.resize(4);
      s.result.suggestions.clear();
      s.result.stop_reason = finder::StopReason::kError;
      s.result.error = "out of memory";
    }
    sweeps.push_back(s);
  }
  return sweeps;
}

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

const std::vector<GridAxis> kSeedAxes = {{"optimizer", {"sgd", "adam"}}, {"seed", {"0", "1", "2"}}};
const std::vector<GridAxis> kBatchAxes = {{"optimizer", {"sgd"}}, {"batch-size", {"8", "16", "32"}}};

TEST(GridSummaryText, HasARowPerSweepUnderTheAxisHeaders) {
  const auto sweeps = sweepsOf(kSeedAxes, {4});
  const std::string text = renderGridSummary(kSeedAxes, sweeps, summarizeGrid(kSeedAxes, sweeps));
  const auto rows = lines(text);
  EXPECT_EQ(rows[0], "lrfind grid: 6 sweeps over optimizer (2) x seed (3)");
  const std::string& header = rows.at(1);
  for (const char* h : {"sweep", "optimizer", "seed", "lr (steepest)", "stop reason", "steps", "group"}) {
    EXPECT_NE(header.find(h), std::string::npos) << h << " in " << header;
  }
  // One row per sweep, the stop reason starting under its header (aligned columns).
  const auto stop_column = header.find("stop reason");
  const auto seed_column = header.find("seed");
  for (std::size_t i = 0; i < sweeps.size(); ++i) {
    const std::string& row = rows.at(2 + i);
    std::istringstream cells(row);
    std::size_t index = 99;
    std::string optimizer, seed;
    cells >> index >> optimizer >> seed;
    EXPECT_EQ(index, i) << row;
    EXPECT_EQ(optimizer, sweeps[i].values[0].second) << row;
    EXPECT_EQ(seed, sweeps[i].values[1].second) << row;
    EXPECT_EQ(row.substr(seed_column, seed.size()), seed) << row;
    const std::string stop = finder::toString(sweeps[i].result.stop_reason);
    EXPECT_EQ(row.substr(stop_column, stop.size()), stop) << row;
    const auto& r = sweeps[i].result;
    if (i == 4) {
      EXPECT_NE(row.find(" - "), std::string::npos) << row;  // no suggestion
    } else {
      EXPECT_NE(row.find(formatLr(r.suggestion().lr)), std::string::npos) << row;
    }
  }
  // Then a line per seed group.
  const auto summary = summarizeGrid(kSeedAxes, sweeps);
  EXPECT_EQ(rows.at(8).rfind("seed group optimizer=sgd: median lr " + formatLr(summary.seed_groups[0].median_lr) +
                                 " over 3/3 seeds, log10 lr ",
                             0),
            0u)
      << rows.at(8);
  EXPECT_NE(rows.at(9).find("seed group optimizer=adam: median lr "), std::string::npos) << rows.at(9);
  EXPECT_NE(rows.at(9).find(" over 2/3 seeds"), std::string::npos) << rows.at(9);
  EXPECT_EQ(rows.size(), 10u) << text;  // no batch fit, so no note
}

TEST(GridSummaryText, BatchFitLinesAndTheirNote) {
  auto sweeps = sweepsOf(kBatchAxes);
  // lr* = 1e-4 * B exactly: alpha 1.
  for (auto& s : sweeps) {
    for (auto& sg : s.result.suggestions) sg.lr = 1e-4 * static_cast<double>(s.info.global_batch_size);
  }
  std::string text = renderGridSummary(kBatchAxes, sweeps, summarizeGrid(kBatchAxes, sweeps));
  EXPECT_NE(text.find("batch-size fit optimizer=sgd: lr* ~ B^1.00 (residual 0.000 in log10 lr, 3 points)\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("linear scaling rule"), std::string::npos) << text;
  EXPECT_NE(text.find("square-root rule"), std::string::npos) << text;

  // One batch size left with a suggestion: no fit, no note.
  sweeps[1].result.suggestions.clear();
  sweeps[2].result.suggestions.clear();
  text = renderGridSummary(kBatchAxes, sweeps, summarizeGrid(kBatchAxes, sweeps));
  EXPECT_NE(text.find("batch-size fit optimizer=sgd: needs suggestions at two batch sizes or more (1 point)"),
            std::string::npos)
      << text;
  EXPECT_EQ(text.find("linear scaling rule"), std::string::npos) << text;
}

TEST(GridSummaryText, NoAxesAndNoSweeps) {
  EXPECT_EQ(renderGridSummary({}, {}, {}), "lrfind grid: 0 sweeps\n");
  const auto sweeps = sweepsOf({});
  const auto rows = lines(renderGridSummary({}, sweeps, summarizeGrid({}, sweeps)));
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0], "lrfind grid: 1 sweep");
  EXPECT_EQ(rows[1].find("  sweep  lr (steepest)"), 0u) << rows[1];
}

TEST(GridJson, ListsEverySweepAndTheGroupStatistics) {
  const auto sweeps = sweepsOf(kSeedAxes, {4});
  const auto summary = summarizeGrid(kSeedAxes, sweeps);
  const auto j = nlohmann::json::parse(
      renderGridJson(kSeedAxes, sweeps, summary, "out/grid.h5", "seed = 1\n", finder::StopReason::kCompleted, ""));
  EXPECT_EQ(j["results"], "out/grid.h5");
  EXPECT_EQ(j["stop_reason"], "completed");
  EXPECT_FALSE(j.contains("error"));
  EXPECT_EQ(j["config_toml"], "seed = 1\n");
  ASSERT_EQ(j["axes"].size(), 2u);
  EXPECT_EQ(j["axes"][1]["name"], "seed");
  EXPECT_EQ(j["axes"][1]["values"], (std::vector<std::string>{"0", "1", "2"}));

  ASSERT_EQ(j["sweeps"].size(), sweeps.size());
  for (std::size_t i = 0; i < sweeps.size(); ++i) {
    const auto& s = j["sweeps"][i];
    EXPECT_EQ(s["index"], i);
    EXPECT_EQ(s["values"]["optimizer"], sweeps[i].values[0].second);
    EXPECT_EQ(s["values"]["seed"], sweeps[i].values[1].second);
    EXPECT_EQ(s["group"], sweeps[i].group);
    EXPECT_EQ(s["started_at"], sweeps[i].started_at);
    EXPECT_EQ(s["ended_at"], sweeps[i].ended_at);
    EXPECT_EQ(s["steps_completed"], sweeps[i].result.stepsCompleted());
    EXPECT_EQ(s["stop_reason"], finder::toString(sweeps[i].result.stop_reason));
    EXPECT_EQ(s["suggest_method"], "steepest");
    if (i == 4) {
      EXPECT_TRUE(s["suggested_lr"].is_null());
      EXPECT_TRUE(s["suggestions"].empty());
      EXPECT_EQ(s["error"], "out of memory");
    } else {
      EXPECT_DOUBLE_EQ(s["suggested_lr"].get<double>(), sweeps[i].result.suggestion().lr);
      EXPECT_EQ(s["suggestions"].size(), finder::allSuggestMethods().size());
      for (const auto& sg : sweeps[i].result.suggestions) {
        const auto& lr = s["suggestions"][finder::toString(sg.method)]["lr"];
        if (sg.found) {
          EXPECT_DOUBLE_EQ(lr.get<double>(), sg.lr);
        } else {
          EXPECT_TRUE(lr.is_null());
        }
      }
      EXPECT_FALSE(s.contains("error"));
    }
  }

  ASSERT_EQ(j["seed_groups"].size(), 2u);
  EXPECT_TRUE(j["batch_fits"].empty());
  for (std::size_t g = 0; g < 2; ++g) {
    const auto& sg = summary.seed_groups[g];
    const auto& jg = j["seed_groups"][g];
    EXPECT_EQ(jg["label"], sg.label);
    EXPECT_EQ(jg["sweeps"], sg.sweeps);
    EXPECT_EQ(jg["found"], sg.found);
    EXPECT_DOUBLE_EQ(jg["median_lr"].get<double>(), sg.median_lr);
    EXPECT_DOUBLE_EQ(jg["log10_min"].get<double>(), sg.log10_min);
    EXPECT_DOUBLE_EQ(jg["log10_max"].get<double>(), sg.log10_max);
    EXPECT_DOUBLE_EQ(jg["log10_iqr"].get<double>(), sg.log10_iqr);
    EXPECT_EQ(jg["band"]["lr"].size(), sg.lr.size());
    EXPECT_EQ(jg["band"]["loss_median"].get<std::vector<double>>(), sg.loss_median);
  }
  EXPECT_EQ(j["seed_groups"][1]["found"], 2);
}

TEST(GridJson, NaNBecomesNullAndTheErrorIsKept) {
  auto sweeps = sweepsOf(kBatchAxes);
  sweeps[1].result.suggestions.clear();
  sweeps[2].result.suggestions.clear();
  const std::vector<GridAxis> axes = {{"batch-size", {"8", "16", "32"}}, {"seed", {"0"}}};
  for (auto& s : sweeps) s.values = {{"batch-size", s.values[1].second}, {"seed", "0"}};
  sweeps[0].result.suggestions.clear();  // the seed group has nothing either
  const auto summary = summarizeGrid(axes, sweeps);
  const auto text = renderGridJson(axes, sweeps, summary, "r.h5", "", finder::StopReason::kInterrupted,
                                   "interrupted by SIGTERM");
  EXPECT_EQ(text.find("NaN"), std::string::npos);
  EXPECT_EQ(text.find("nan"), std::string::npos);
  const auto j = nlohmann::json::parse(text);
  EXPECT_EQ(j["stop_reason"], "interrupted");
  EXPECT_EQ(j["error"], "interrupted by SIGTERM");
  EXPECT_FALSE(j.contains("config_toml"));
  ASSERT_EQ(j["batch_fits"].size(), 1u);
  EXPECT_EQ(j["batch_fits"][0]["label"], "seed=0");
  EXPECT_TRUE(j["batch_fits"][0]["sweeps"].empty());
  EXPECT_TRUE(j["batch_fits"][0]["alpha"].is_null());
  EXPECT_TRUE(j["batch_fits"][0]["intercept"].is_null());
  EXPECT_TRUE(j["batch_fits"][0]["residual"].is_null());
  ASSERT_EQ(j["seed_groups"].size(), 3u);
  EXPECT_EQ(j["seed_groups"][0]["found"], 0);
  EXPECT_TRUE(j["seed_groups"][0]["median_lr"].is_null());
  EXPECT_TRUE(j["seed_groups"][0]["log10_iqr"].is_null());
}

TEST(GridJson, BatchFitStatistics) {
  auto sweeps = sweepsOf(kBatchAxes);
  for (auto& s : sweeps) {
    for (auto& sg : s.result.suggestions) sg.lr = 1e-4 * std::sqrt(static_cast<double>(s.info.global_batch_size));
  }
  const auto j = nlohmann::json::parse(renderGridJson(kBatchAxes, sweeps, summarizeGrid(kBatchAxes, sweeps), "r.h5",
                                                      "", finder::StopReason::kCompleted, ""));
  ASSERT_EQ(j["batch_fits"].size(), 1u);
  const auto& f = j["batch_fits"][0];
  EXPECT_EQ(f["label"], "optimizer=sgd");
  EXPECT_EQ(f["sweeps"], (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(f["batch"], (std::vector<double>{16, 32, 64}));
  EXPECT_NEAR(f["alpha"].get<double>(), 0.5, 1e-12);
  EXPECT_NEAR(f["intercept"].get<double>(), -4, 1e-12);
  EXPECT_NEAR(f["residual"].get<double>(), 0, 1e-12);
}

TEST(GridSvg, ACurveAndAMarkerPerSweepAndALegendOfTheirValues) {
  const auto sweeps = sweepsOf(kBatchAxes, {2});
  const std::string svg = renderGridSvg(kBatchAxes, sweeps, summarizeGrid(kBatchAxes, sweeps));
  EXPECT_EQ(svg.rfind("<svg ", 0), 0u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  const auto curves = elements(svg, "<polyline class=\"curve\"");
  ASSERT_EQ(curves.size(), sweeps.size());
  for (std::size_t i = 0; i < sweeps.size(); ++i) EXPECT_EQ(attr(curves[i], "data-sweep"), std::to_string(i));
  // Distinct colours, and a point per finite step.
  EXPECT_NE(attr(curves[0], "stroke"), attr(curves[1], "stroke"));
  EXPECT_EQ(count(attr(curves[0], "points"), ","), 30u);
  EXPECT_EQ(count(attr(curves[2], "points"), ","), 4u);
  // The cut sweep has no suggestion, so no marker.
  const auto markers = elements(svg, "<circle class=\"marker\"");
  ASSERT_EQ(markers.size(), 2u);
  EXPECT_EQ(attr(markers[0], "fill"), attr(curves[0], "stroke"));
  EXPECT_TRUE(elements(svg, "<polygon class=\"band\"").empty());
  EXPECT_EQ(elements(svg, "<rect class=\"legend\"").size(), 1u);
  EXPECT_EQ(count(svg, "class=\"legend-entry\""), sweeps.size());
  EXPECT_NE(svg.find(">optimizer=sgd, batch-size=8: " + formatLr(sweeps[0].result.suggestion().lr) + "</text>"),
            std::string::npos);
  EXPECT_NE(svg.find(">optimizer=sgd, batch-size=32: none</text>"), std::string::npos);
  EXPECT_NE(svg.find("(log scale)"), std::string::npos);
}

TEST(GridSvg, SeedGroupsGetABandAMedianAndTheLegend) {
  const auto sweeps = sweepsOf(kSeedAxes, {4});
  const auto summary = summarizeGrid(kSeedAxes, sweeps);
  const std::string svg = renderGridSvg(kSeedAxes, sweeps, summary);
  const auto curves = elements(svg, "<polyline class=\"curve\"");
  ASSERT_EQ(curves.size(), sweeps.size());
  // The seeds' curves are faint, in their group's colour.
  for (std::size_t i = 0; i < sweeps.size(); ++i) {
    EXPECT_EQ(attr(curves[i], "stroke-width"), "1");
    EXPECT_EQ(attr(curves[i], "stroke"), attr(curves[i < 3 ? 0 : 3], "stroke"));
  }
  EXPECT_NE(attr(curves[0], "stroke"), attr(curves[3], "stroke"));
  const auto bands = elements(svg, "<polygon class=\"band\"");
  ASSERT_EQ(bands.size(), 2u);
  EXPECT_EQ(attr(bands[0], "fill"), attr(curves[0], "stroke"));
  EXPECT_EQ(count(attr(bands[0], "points"), ","), 2 * summary.seed_groups[0].lr.size());
  const auto medians = elements(svg, "<polyline class=\"median\"");
  ASSERT_EQ(medians.size(), 2u);
  EXPECT_EQ(attr(medians[1], "stroke"), attr(curves[3], "stroke"));
  EXPECT_EQ(elements(svg, "<circle class=\"marker\"").size(), 5u);
  EXPECT_EQ(elements(svg, "<circle class=\"group-marker\"").size(), 2u);
  // The legend lists the groups, not the seeds.
  EXPECT_EQ(count(svg, "class=\"legend-entry\""), 2u);
  EXPECT_NE(svg.find(">optimizer=sgd: median " + formatLr(summary.seed_groups[0].median_lr) + " (3/3 seeds)</text>"),
            std::string::npos);
  EXPECT_NE(svg.find(">optimizer=adam: median "), std::string::npos);
}

// The y axis' tick labels (right-aligned at the plot's left edge).
std::vector<double> yTicks(const std::string& svg) {
  std::vector<double> ticks;
  const std::regex re("text-anchor=\"end\">([^<]*)</text>");
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), re); it != std::sregex_iterator(); ++it) {
    ticks.push_back(std::stod((*it)[1].str()));
  }
  return ticks;
}

TEST(GridSvg, OneDivergingSweepDoesNotFlattenTheOthers) {
  auto sweeps = sweepsOf(kBatchAxes);
  // Sweep 1 blows up over its last ten steps, then NaN.
  auto& r = sweeps[1].result;
  for (std::size_t k = 20; k < 30; ++k) r.loss[k] = std::pow(10.0, static_cast<double>(k) - 15);
  r.loss[29] = NAN;
  const std::string svg = renderGridSvg(kBatchAxes, sweeps, summarizeGrid(kBatchAxes, sweeps));
  const auto ticks = yTicks(svg);
  ASSERT_GE(ticks.size(), 3u);
  // The curves start near 3 and fall to 1: the range stays within a few times that.
  EXPECT_LT(*std::max_element(ticks.begin(), ticks.end()), 10);
  EXPECT_GE(*std::max_element(ticks.begin(), ticks.end()), 2.5);
  EXPECT_LE(*std::min_element(ticks.begin(), ticks.end()), 2);
  // Sweep 0 (3 down to 1) spans a good part of the plot's height.
  double top = INFINITY, bottom = -INFINITY;
  std::istringstream pts(attr(elements(svg, "<polyline class=\"curve\" data-sweep=\"0\"").at(0), "points"));
  for (std::string xy; pts >> xy;) {
    const double y = std::stod(xy.substr(xy.find(',') + 1));
    top = std::min(top, y);
    bottom = std::max(bottom, y);
  }
  const double plot_h = std::stod(attr(elements(svg, "<rect class=\"axes\"").at(0), "height"));
  EXPECT_GT(bottom - top, 0.25 * plot_h);
  // The NaN is skipped, no coordinate is huge.
  const auto points = attr(elements(svg, "<polyline class=\"curve\" data-sweep=\"1\"").at(0), "points");
  EXPECT_EQ(count(points, ","), 29u);
  EXPECT_EQ(points.find("nan"), std::string::npos);
  EXPECT_EQ(points.find("e+"), std::string::npos);
}

TEST(GridSvg, LinearWhenASweepIsLinearAndEscapesValues) {
  const std::vector<GridAxis> axes = {{"mode", {"exponential", "linear"}}, {"loss", {"a<b"}}};
  auto sweeps = sweepsOf(axes);
  sweeps[1].options.mode = finder::Mode::kLinear;
  const std::string svg = renderGridSvg(axes, sweeps, summarizeGrid(axes, sweeps));
  EXPECT_EQ(svg.find("(log scale)"), std::string::npos);
  EXPECT_NE(svg.find("mode=linear, loss=a&lt;b: "), std::string::npos);
  EXPECT_EQ(svg.find("a<b"), std::string::npos);
  EXPECT_EQ(elements(svg, "<polyline class=\"curve\"").size(), 2u);
}

TEST(GridSvg, NothingToPlot) {
  auto sweeps = sweepsOf(kBatchAxes);
  for (auto& s : sweeps) s.result = finder::SweepResult{};
  const std::string svg = renderGridSvg(kBatchAxes, sweeps, summarizeGrid(kBatchAxes, sweeps));
  EXPECT_NE(svg.find("no finite loss was recorded"), std::string::npos);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_NE(renderGridSvg({}, {}, {}).find("no finite loss was recorded"), std::string::npos);
}

}  // namespace
}  // namespace lrfind::runtime
