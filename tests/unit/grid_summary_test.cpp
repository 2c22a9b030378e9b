// runtime/grid_summary: labels, numpy's quantiles, seed groups and the batch-size fit,
// against values computed by hand. Links lrfind_grid alone: the statistics need no
// LibTorch.

#include "runtime/grid_summary.h"

#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "common/error.h"

namespace lrfind::runtime {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// A suggestion list with the chosen method (steepest) at `lr`; none at all when `lr` is
// NaN, as for a sweep cut short before its suggestions were computed.
std::vector<finder::Suggestion> chosenAt(double lr) {
  if (std::isnan(lr)) return {};
  finder::Suggestion s;
  s.method = finder::SuggestMethod::kSteepest;
  s.found = true;
  s.lr = lr;
  s.index = 0;
  return {s};
}

// The sweeps of `axes` in grid order, each with the chosen lr `lrs[i]` (NaN: none) and
// global batch size from the "batch-size" axis when there is one.
std::vector<GridSweep> sweepsOf(const std::vector<GridAxis>& axes, const std::vector<double>& lrs) {
  std::vector<GridSweep> sweeps;
  for (std::size_t i = 0; i < lrs.size(); ++i) {
    GridSweep s;
    s.index = i;
    std::size_t rest = i;
    for (auto a = axes.rbegin(); a != axes.rend(); ++a) {
      s.values.insert(s.values.begin(), {a->name, a->values[rest % a->values.size()]});
      rest /= a->values.size();
    }
    for (const auto& [axis, value] : s.values) {
      if (axis == "batch-size") s.info.global_batch_size = std::stoll(value);
    }
    s.result.suggestions = chosenAt(lrs[i]);
    sweeps.push_back(s);
  }
  return sweeps;
}

// A seed group's members and statistics as expected; the median lr to 1e-13 of itself,
// the log10 statistics to 1e-12.
struct ExpectedGroup {
  std::string label;
  std::vector<std::size_t> sweeps;
  int found;
  double median_lr, log10_min, log10_max, log10_iqr;
};

void expectGroup(const SeedGroup& g, const ExpectedGroup& e) {
  EXPECT_EQ(g.label, e.label);
  EXPECT_EQ(g.sweeps, e.sweeps) << e.label;
  EXPECT_EQ(g.found, e.found) << e.label;
  EXPECT_NEAR(g.median_lr, e.median_lr, 1e-13 * e.median_lr) << e.label;
  EXPECT_NEAR(g.log10_min, e.log10_min, 1e-12) << e.label;
  EXPECT_NEAR(g.log10_max, e.log10_max, 1e-12) << e.label;
  EXPECT_NEAR(g.log10_iqr, e.log10_iqr, 1e-12) << e.label;
}

TEST(AxisLabel, ListsTheValuesInGridOrderButTheSkippedAxis) {
  GridSweep s;
  s.values = {{"optimizer", "sgd"}, {"seed", "3"}, {"batch-size", "16"}};
  EXPECT_EQ(axisLabel(s, ""), "optimizer=sgd, seed=3, batch-size=16");
  EXPECT_EQ(axisLabel(s, "seed"), "optimizer=sgd, batch-size=16");
  EXPECT_EQ(axisLabel(s, "optimizer"), "seed=3, batch-size=16");
  EXPECT_EQ(axisLabel(s, "momentum"), "optimizer=sgd, seed=3, batch-size=16");
  s.values = {{"seed", "0"}};
  EXPECT_EQ(axisLabel(s, "seed"), "");
}

// numpy.quantile(values, q), worked by hand: h = q (n - 1) into the sorted values,
// v[floor h] + (h - floor h) (v[floor h + 1] - v[floor h]).
TEST(Quantile, IsNumpysLinearMethod) {
  EXPECT_DOUBLE_EQ(quantile({1, 2, 3, 4}, 0.25), 1.75);  // h = 0.75
  EXPECT_DOUBLE_EQ(quantile({1, 2, 3, 4}, 0.5), 2.5);    // h = 1.5
  EXPECT_DOUBLE_EQ(quantile({1, 2, 3, 4}, 0.75), 3.25);  // h = 2.25
  EXPECT_DOUBLE_EQ(quantile({4, 1, 3, 2}, 0.5), 2.5);    // sorted first
  EXPECT_DOUBLE_EQ(quantile({3, 1, 2}, 0.5), 2);
  EXPECT_DOUBLE_EQ(quantile({1, 10, 100, 1000, 2}, 0.3), 3.6);  // h = 1.2: 2 + 0.2 * 8
  EXPECT_DOUBLE_EQ(quantile({1, 10, 100, 1000, 2}, 0.9), 640);  // h = 3.6: 100 + 0.6 * 900
  EXPECT_DOUBLE_EQ(quantile({0.7, 0.1, 0.2}, 0.1), 0.12);       // h = 0.2: 0.1 + 0.2 * 0.1
  EXPECT_DOUBLE_EQ(quantile({-3, -1, -2}, 0.75), -1.5);         // h = 1.5
  EXPECT_EQ(quantile({5, -2, 9}, 0), -2);
  EXPECT_EQ(quantile({5, -2, 9}, 1), 9);
  EXPECT_EQ(quantile({7}, 0.3), 7);
  EXPECT_TRUE(std::isnan(quantile({1, kNaN, 3}, 0.5)));  // numpy: nan
  EXPECT_THROW(quantile({}, 0.5), Error);
  EXPECT_THROW(quantile({1, 2}, 1.5), Error);
}

TEST(SummarizeGrid, HasNoGroupsWithoutASeedOrBatchSizeAxis) {
  const std::vector<GridAxis> axes = {{"optimizer", {"sgd", "adam"}}};
  const auto summary = summarizeGrid(axes, sweepsOf(axes, {1e-3, 1e-2}));
  EXPECT_TRUE(summary.seed_groups.empty());
  EXPECT_TRUE(summary.batch_fits.empty());
  EXPECT_TRUE(summarizeGrid({}, {}).seed_groups.empty());
}

// Two groups of four seeds. sgd: 1e-3, 1e-2, 1e-1 and a sweep without suggestions;
// adam: 1e-4, one whose chosen method found nothing (another method did), 1e-3, 1e-2.
TEST(SeedGroups, MedianSpreadAndIqrOverTheSeedsWithASuggestion) {
  const std::vector<GridAxis> axes = {{"optimizer", {"sgd", "adam"}}, {"seed", {"0", "1", "2", "3"}}};
  auto sweeps = sweepsOf(axes, {1e-3, 1e-2, 1e-1, kNaN, 1e-4, 5.0, 1e-3, 1e-2});
  sweeps[5].result.suggestions[0].found = false;
  finder::Suggestion valley;
  valley.method = finder::SuggestMethod::kValley;
  valley.found = true;
  valley.lr = 5.0;
  sweeps[5].result.suggestions.push_back(valley);

  const auto summary = summarizeGrid(axes, sweeps);
  EXPECT_TRUE(summary.batch_fits.empty());
  ASSERT_EQ(summary.seed_groups.size(), 2u);
  // log10: -3, -2, -1. Median -2; q25 = -2.5, q75 = -1.5.
  expectGroup(summary.seed_groups[0], {"optimizer=sgd", {0, 1, 2, 3}, 3, 1e-2, -3, -1, 1});
  // log10: -4, -3, -2 (the valley's 5.0 is not the chosen method's).
  expectGroup(summary.seed_groups[1], {"optimizer=adam", {4, 5, 6, 7}, 3, 1e-3, -4, -2, 1});
}

TEST(SeedGroups, EvenCountsTakeTheMiddleTwo) {
  const std::vector<GridAxis> axes = {{"seed", {"0", "1", "2", "3"}}};
  // log10: -4, -3, -3, -2 -> median -3, q25 = -3.25 (h 0.75), q75 = -2.75 (h 2.25).
  const auto summary = summarizeGrid(axes, sweepsOf(axes, {1e-4, 1e-3, 1e-3, 1e-2}));
  ASSERT_EQ(summary.seed_groups.size(), 1u);
  const auto& g = summary.seed_groups[0];
  EXPECT_EQ(g.label, "");  // seed is the only axis
  EXPECT_EQ(g.found, 4);
  EXPECT_NEAR(std::log10(g.median_lr), -3, 1e-12);
  EXPECT_NEAR(g.log10_iqr, 0.5, 1e-12);
}

TEST(SeedGroups, WithoutAnySuggestionTheStatisticsAreNaN) {
  const std::vector<GridAxis> axes = {{"seed", {"0", "1"}}};
  const auto summary = summarizeGrid(axes, sweepsOf(axes, {kNaN, kNaN}));
  ASSERT_EQ(summary.seed_groups.size(), 1u);
  const auto& g = summary.seed_groups[0];
  EXPECT_EQ(g.found, 0);
  EXPECT_EQ(g.sweeps, (std::vector<std::size_t>{0, 1}));
  EXPECT_TRUE(std::isnan(g.median_lr));
  EXPECT_TRUE(std::isnan(g.log10_min));
  EXPECT_TRUE(std::isnan(g.log10_max));
  EXPECT_TRUE(std::isnan(g.log10_iqr));
  EXPECT_TRUE(g.lr.empty());  // no curve recorded
}

// Four seeds whose curves end at different steps (a diverged sweep stops early), one
// with a NaN inside and an lr of its own.
TEST(SeedGroups, BandRunsWhileAnySeedHasAFinitePoint) {
  const std::vector<GridAxis> axes = {{"seed", {"0", "1", "2", "3"}}};
  auto sweeps = sweepsOf(axes, {1e-3, 1e-3, 1e-3, 1e-3});
  auto lrs = [](std::size_t n, double scale) {
    std::vector<double> lr;
    for (std::size_t k = 0; k < n; ++k) lr.push_back(scale * std::pow(10.0, static_cast<double>(k) - 5));
    return lr;
  };
  sweeps[0].result.loss = {4, 3, 2, 1};
  sweeps[1].result.loss = {5, 4, 3};
  sweeps[2].result.loss = {3, kNaN, 1, 0.5, 0.2};
  sweeps[3].result.loss = {6, 5};
  for (std::size_t i = 0; i < 4; ++i) sweeps[i].result.lr = lrs(sweeps[i].result.loss.size(), i == 2 ? 2 : 1);

  const auto summary = summarizeGrid(axes, sweeps);
  ASSERT_EQ(summary.seed_groups.size(), 1u);
  const auto& g = summary.seed_groups[0];
  // k=0: {4, 5, 3, 6}; k=1: {3, 4, 5} (seed 2 NaN); k=2: {2, 3, 1}; k=3: {1, 0.5};
  // k=4: {0.2}, seed 2 alone (its lr); k=5: nobody.
  EXPECT_EQ(g.loss_min, (std::vector<double>{3, 3, 1, 0.5, 0.2}));
  EXPECT_EQ(g.loss_max, (std::vector<double>{6, 5, 3, 1, 0.2}));
  EXPECT_EQ(g.loss_median, (std::vector<double>{4.5, 4, 2, 0.75, 0.2}));
  ASSERT_EQ(g.lr.size(), 5u);
  for (std::size_t k = 0; k < 4; ++k) EXPECT_EQ(g.lr[k], sweeps[0].result.lr[k]) << k;
  EXPECT_EQ(g.lr[4], sweeps[2].result.lr[4]);
}

TEST(SeedGroups, GroupBySeveralOtherAxesInOrderOfTheirFirstSweep) {
  // seed first: the sweeps of one group are not adjacent.
  const std::vector<GridAxis> axes = {
      {"seed", {"0", "1"}}, {"optimizer", {"sgd", "adam"}}, {"batch-size", {"16", "32"}}};
  const auto summary = summarizeGrid(axes, sweepsOf(axes, std::vector<double>(8, 1e-3)));
  ASSERT_EQ(summary.seed_groups.size(), 4u);
  const std::vector<std::pair<std::string, std::vector<std::size_t>>> expected = {
      {"optimizer=sgd, batch-size=16", {0, 4}},
      {"optimizer=sgd, batch-size=32", {1, 5}},
      {"optimizer=adam, batch-size=16", {2, 6}},
      {"optimizer=adam, batch-size=32", {3, 7}}};
  for (std::size_t g = 0; g < expected.size(); ++g) {
    EXPECT_EQ(summary.seed_groups[g].label, expected[g].first);
    EXPECT_EQ(summary.seed_groups[g].sweeps, expected[g].second);
  }
  // And the batch fits, one per seed and optimizer.
  ASSERT_EQ(summary.batch_fits.size(), 4u);
  EXPECT_EQ(summary.batch_fits[0].label, "seed=0, optimizer=sgd");
  EXPECT_EQ(summary.batch_fits[0].sweeps, (std::vector<std::size_t>{0, 1}));
  EXPECT_EQ(summary.batch_fits[3].label, "seed=1, optimizer=adam");
  EXPECT_EQ(summary.batch_fits[3].sweeps, (std::vector<std::size_t>{6, 7}));
  // Equal lrs at two batch sizes: alpha 0.
  EXPECT_NEAR(summary.batch_fits[0].alpha, 0, 1e-12);
}

TEST(BatchFit, RecoversAnExactPowerLaw) {
  const std::vector<GridAxis> axes = {{"batch-size", {"16", "32", "64", "128", "256"}}};
  const double alpha = 0.73, c = 2.5e-5;
  std::vector<double> lrs;
  for (double b : {16, 32, 64, 128, 256}) lrs.push_back(c * std::pow(b, alpha));
  const auto summary = summarizeGrid(axes, sweepsOf(axes, lrs));
  EXPECT_TRUE(summary.seed_groups.empty());
  ASSERT_EQ(summary.batch_fits.size(), 1u);
  const auto& f = summary.batch_fits[0];
  EXPECT_EQ(f.label, "");
  EXPECT_EQ(f.sweeps, (std::vector<std::size_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(f.batch, (std::vector<double>{16, 32, 64, 128, 256}));
  EXPECT_EQ(f.lr, lrs);
  EXPECT_NEAR(f.alpha, alpha, 1e-12);
  EXPECT_NEAR(f.intercept, std::log10(c), 1e-12);
  EXPECT_NEAR(f.residual, 0, 1e-12);
}

// x = log10 B = 1, 2, 3 and y = log10 lr = -3, -2.4, -2.1, by hand: means 2 and -2.5,
// Sxy = 0.5 + 0 + 0.4 = 0.9, Sxx = 2: alpha 0.45, intercept -2.5 - 0.9 = -3.4; the fit
// -2.95, -2.5, -2.05 leaves -0.05, 0.1, -0.05: rms sqrt(0.015 / 3) = sqrt(0.005).
TEST(BatchFit, LeastSquaresWithNoise) {
  const std::vector<GridAxis> axes = {{"batch-size", {"10", "100", "1000"}}};
  const auto summary =
      summarizeGrid(axes, sweepsOf(axes, {std::pow(10.0, -3), std::pow(10.0, -2.4), std::pow(10.0, -2.1)}));
  ASSERT_EQ(summary.batch_fits.size(), 1u);
  const auto& f = summary.batch_fits[0];
  EXPECT_NEAR(f.alpha, 0.45, 1e-12);
  EXPECT_NEAR(f.intercept, -3.4, 1e-12);
  EXPECT_NEAR(f.residual, std::sqrt(0.005), 1e-12);
}

TEST(BatchFit, UsesTheGlobalBatchSizeAndOnlySweepsWithASuggestion) {
  const std::vector<GridAxis> axes = {{"batch-size", {"10", "100", "1000", "5"}}};
  auto sweeps = sweepsOf(axes, {std::pow(10.0, -3), std::pow(10.0, -2.4), std::pow(10.0, -2.1), kNaN});
  // Per-rank batch on the axis, global batch (x 4 ranks) in the fit: alpha unchanged,
  // the intercept moves by -alpha log10 4.
  for (auto& s : sweeps) s.info.global_batch_size *= 4;
  const auto f = summarizeGrid(axes, sweeps).batch_fits.at(0);
  EXPECT_EQ(f.sweeps, (std::vector<std::size_t>{0, 1, 2}));
  EXPECT_EQ(f.batch, (std::vector<double>{40, 400, 4000}));
  EXPECT_NEAR(f.alpha, 0.45, 1e-12);
  EXPECT_NEAR(f.intercept, -3.4 - 0.45 * std::log10(4.0), 1e-12);
  EXPECT_NEAR(f.residual, std::sqrt(0.005), 1e-12);
}

TEST(BatchFit, OneDistinctBatchSizeGivesNaN) {
  // Two seeds at one batch size, and a second batch size without a suggestion.
  const std::vector<GridAxis> axes = {{"batch-size", {"16", "32"}}, {"seed", {"0", "1"}}};
  const auto summary = summarizeGrid(axes, sweepsOf(axes, {1e-3, 2e-3, kNaN, kNaN}));
  ASSERT_EQ(summary.batch_fits.size(), 2u);  // one per seed
  for (const auto& f : summary.batch_fits) {
    EXPECT_EQ(f.batch, (std::vector<double>{16}));
    EXPECT_TRUE(std::isnan(f.alpha));
    EXPECT_TRUE(std::isnan(f.intercept));
    EXPECT_TRUE(std::isnan(f.residual));
  }
  EXPECT_EQ(summary.batch_fits[0].label, "seed=0");
  EXPECT_EQ(summary.batch_fits[1].label, "seed=1");
  // And the seed groups, one per batch size; 32's has no suggestion.
  ASSERT_EQ(summary.seed_groups.size(), 2u);
  EXPECT_EQ(summary.seed_groups[0].label, "batch-size=16");
  EXPECT_EQ(summary.seed_groups[0].found, 2);
  EXPECT_EQ(summary.seed_groups[1].found, 0);
}

TEST(BatchFit, GroupsByTheOtherAxes) {
  const std::vector<GridAxis> axes = {{"optimizer", {"sgd", "adam"}}, {"batch-size", {"10", "100", "1000"}}};
  // sgd: lr = 1e-4 B (alpha 1); adam: lr = 1e-4 sqrt(B) (alpha 0.5).
  std::vector<double> lrs;
  for (double b : {10, 100, 1000}) lrs.push_back(1e-4 * b);
  for (double b : {10, 100, 1000}) lrs.push_back(1e-4 * std::sqrt(b));
  const auto summary = summarizeGrid(axes, sweepsOf(axes, lrs));
  ASSERT_EQ(summary.batch_fits.size(), 2u);
  EXPECT_EQ(summary.batch_fits[0].label, "optimizer=sgd");
  EXPECT_EQ(summary.batch_fits[0].sweeps, (std::vector<std::size_t>{0, 1, 2}));
  EXPECT_NEAR(summary.batch_fits[0].alpha, 1, 1e-12);
  EXPECT_NEAR(summary.batch_fits[0].intercept, -4, 1e-12);
  EXPECT_EQ(summary.batch_fits[1].label, "optimizer=adam");
  EXPECT_EQ(summary.batch_fits[1].sweeps, (std::vector<std::size_t>{3, 4, 5}));
  EXPECT_NEAR(summary.batch_fits[1].alpha, 0.5, 1e-12);
  EXPECT_NEAR(summary.batch_fits[1].intercept, -4, 1e-12);
}

}  // namespace
}  // namespace lrfind::runtime
