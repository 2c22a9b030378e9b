#include "runtime/results.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include <gtest/gtest.h>

#include "comm/errors.h"
#include "finder/suggest.h"
#include "runtime/report.h"
#include "test_util.h"

namespace lrfind::runtime {
namespace {

using lrfind::testing::TempDir;

finder::SweepOptions options() {
  finder::SweepOptions o;
  o.min_lr = 1e-4;
  o.max_lr = 1;
  o.num_training = 30;
  o.skip_begin = 2;
  return o;
}

RunInfo info() {
  RunInfo i;
  i.model = "mlp";
  i.data = "synthetic";
  i.optimizer = "sgd";
  i.loss_fn = "cross_entropy";
  i.device = "cpu";
  i.batch_size = 16;
  i.global_batch_size = 32;
  i.seed = 9;
  i.world_size = 2;
  return i;
}

// Drives the writer like the sweep does, with a made-up two-rank curve.
finder::SweepResult drive(ResultsWriter& w, const finder::SweepOptions& o, int64_t steps) {
  finder::SweepResult r;
  r.world_size = 2;
  w.onStart(o, 2);
  for (int64_t k = 0; k < steps; ++k) {
    finder::StepRecord rec;
    rec.step = k;
    rec.lr = o.min_lr * std::pow(o.max_lr / o.min_lr, double(k) / (o.num_training - 1));
    rec.loss_raw = 2.0 - std::sin(0.1 * k);
    rec.loss = rec.loss_raw * 0.9;
    rec.loss_per_rank.push_back(rec.loss_raw - 0.1);
    rec.loss_per_rank.push_back(rec.loss_raw + 0.1);
    rec.seconds = 0.01 * (k + 1);
    w.onStep(rec);
    r.lr.push_back(rec.lr);
    r.loss.push_back(rec.loss);
    r.loss_raw.push_back(rec.loss_raw);
    r.loss_per_rank.push_back(rec.loss_per_rank);
    r.step_seconds.push_back(rec.seconds);
  }
  return r;
}

TEST(Results, RoundTripThroughHdf5) {
  TempDir dir;
  const auto out = dir.file("r.h5");
  const auto o = options();
  ResultsWriter w(out, info());
  auto r = drive(w, o, 25);
  r.stop_reason = finder::StopReason::kDiverged;
  r.suggestions = finder::suggestAll({r.lr, r.loss, o.mode, o.skip_begin, o.skip_end});
  EXPECT_FALSE(std::filesystem::exists(out)) << "nothing at --out before the end";
  w.onEnd(r);
  EXPECT_TRUE(std::filesystem::exists(out));
  EXPECT_FALSE(std::filesystem::exists(partialPath(out)));

  const ResultsData d = readResults(out);
  EXPECT_EQ(d.lr, r.lr);
  EXPECT_EQ(d.loss, r.loss);
  EXPECT_EQ(d.loss_raw, r.loss_raw);
  EXPECT_EQ(d.step_seconds, r.step_seconds);
  EXPECT_EQ(d.loss_per_rank, r.loss_per_rank);
  EXPECT_EQ(d.numbers.at("steps_completed"), 25);
  EXPECT_EQ(d.numbers.at("complete"), 1);
  EXPECT_EQ(d.numbers.at("world_size"), 2);
  EXPECT_EQ(d.numbers.at("batch_size"), 16);
  EXPECT_EQ(d.numbers.at("global_batch_size"), 32);
  EXPECT_EQ(d.numbers.at("num_training"), 30);
  EXPECT_EQ(d.numbers.at("min_lr"), 1e-4);
  EXPECT_EQ(d.numbers.at("early_stop_threshold"), 4.0);
  EXPECT_EQ(d.numbers.at("seed"), 9);
  EXPECT_EQ(d.strings.at("stop_reason"), "diverged");
  EXPECT_EQ(d.strings.at("mode"), "exponential");
  EXPECT_EQ(d.strings.at("suggest_method"), "steepest");
  EXPECT_EQ(d.strings.at("optimizer"), "sgd");
  EXPECT_EQ(d.strings.at("loss_fn"), "cross_entropy");
  EXPECT_EQ(d.strings.at("model"), "mlp");
  EXPECT_FALSE(d.strings.at("lrfind_version").empty());
  for (const auto& s : r.suggestions) {
    const std::string m = finder::toString(s.method);
    EXPECT_EQ(d.suggestions.at(m + "_index"), s.found ? s.index : -1) << m;
    if (s.found) {
      EXPECT_EQ(d.suggestions.at(m + "_lr"), s.lr) << m;
    }
  }
  EXPECT_EQ(d.numbers.at("suggested_lr"), r.suggestion().lr);
}

TEST(Results, PartialFileIsReadableMidSweep) {
  TempDir dir;
  const auto out = dir.file("r.h5");
  const auto o = options();
  ResultsWriter w(out, info());
  drive(w, o, 7);
  // The writer still holds the file open: what a killed job leaves behind.
  const ResultsData d = readResults(partialPath(out));
  EXPECT_EQ(d.lr.size(), 7u);
  EXPECT_EQ(d.numbers.at("steps_completed"), 7);
  EXPECT_EQ(d.numbers.at("complete"), 0);
  EXPECT_EQ(d.strings.at("stop_reason"), "running");
  EXPECT_TRUE(std::isnan(d.numbers.at("suggested_lr")));
}

TEST(Results, ErrorEndStaysPartial) {
  TempDir dir;
  const auto out = dir.file("r.h5");
  const auto o = options();
  ResultsWriter w(out, info());
  auto r = drive(w, o, 3);
  r.stop_reason = finder::StopReason::kError;
  r.error = "rank 1, step 3: bad batch";
  r.suggestions = finder::suggestAll({r.lr, r.loss, o.mode, o.skip_begin, o.skip_end});
  w.onEnd(r);
  EXPECT_FALSE(std::filesystem::exists(out));
  const ResultsData d = readResults(partialPath(out));
  EXPECT_EQ(d.numbers.at("complete"), 0);
  EXPECT_EQ(d.strings.at("stop_reason"), "error");
  EXPECT_EQ(d.strings.at("error"), "rank 1, step 3: bad batch");
}

TEST(Results, OutputPathChecks) {
  TempDir dir;
  const auto existing = dir.file("old.h5");
  std::ofstream(existing) << "keep me";
  auto message = [](const std::string& path, bool force) {
    try {
      checkOutputPath(path, force, "--out");
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(message(existing, false).find("exists; pass --force"), std::string::npos);
  EXPECT_EQ(message(existing, true), "");
  EXPECT_NE(message(dir.file("missing/dir/r.h5"), false).find("does not exist"), std::string::npos);
  EXPECT_NE(message(dir.path().string(), false).find("is a directory"), std::string::npos);
  EXPECT_EQ(message(dir.file("new.h5"), false), "");
}

// A range-test-like curve over 30 steps: flat, then falling; `last_loss` replaces the
// final point when given.
finder::SweepResult curve(const finder::SweepOptions& o, std::optional<double> last_loss = std::nullopt) {
  finder::SweepResult r;
  for (int k = 0; k < 30; ++k) {
    r.lr.push_back(o.min_lr * std::pow(1e4, k / 29.0));
    r.loss.push_back(k == 29 && last_loss ? *last_loss : 2.0 - std::tanh((k - 15) / 4.0));
    r.loss_raw.push_back(r.loss.back());
  }
  r.stop_reason = finder::StopReason::kCompleted;
  r.suggestions = finder::suggestAll({r.lr, r.loss, o.mode, o.skip_begin, o.skip_end});
  return r;
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

// The text plot for batch logs: `height` rows, the suggestion's column marked, and
// points outside the range (the last one, left out of it) clamped to an edge.
TEST(Report, TextPlotKeepsEveryPointInsideTheFrame) {
  const auto o = options();
  for (const double last : {-50.0, 1.0, 50.0}) {
    const auto r = curve(o, last);
    const std::string plot = renderTextPlot(r, o, 40, 8);
    std::vector<std::string> lines;
    std::istringstream in(plot);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    ASSERT_EQ(lines.size(), 1u + 8u + 2u + 1u) << plot;  // title, rows, axis, labels, marker
    for (int row = 1; row <= 8; ++row) EXPECT_EQ(lines[row].size(), 14u + 40u) << plot;  // label, ' |', columns
    EXPECT_NE(lines.back().find("^ " + formatLr(r.suggestion().lr)), std::string::npos) << plot;
    if (last < 0) {
      EXPECT_NE(lines[8].find('v'), std::string::npos) << plot;
    }
    if (last > 10) {
      EXPECT_NE(lines[1].find('^'), std::string::npos) << plot;
    }
  }
  finder::SweepResult empty;
  EXPECT_NE(renderTextPlot(empty, o).find("no finite loss"), std::string::npos);
}

}  // namespace
}  // namespace lrfind::runtime
