#include "finder/suggest.h"

#include <cmath>
#include <limits>
#include <vector>

#include <gtest/gtest.h>

#include "finder/schedule.h"

namespace lrfind::finder {
namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();

std::vector<double> expLrs(int64_t n, double lo = 1e-5, double hi = 10.0) {
  std::vector<double> lr;
  for (int64_t k = 0; k < n; ++k) lr.push_back(scheduledLr(k, n, lo, hi, Mode::kExponential));
  return lr;
}

// The curve of tests/reference/suggest_reference.py: a noisy sigmoid drop, then a rise.
std::vector<double> referenceCurve(const std::vector<double>& lr) {
  std::vector<double> loss;
  for (std::size_t i = 0; i < lr.size(); ++i) {
    const double x = std::log10(lr[i]);
    double v = 2.3 - 1.5 / (1 + std::exp(-3 * (x + 2.5))) + 0.02 * std::sin(7.3 * static_cast<double>(i));
    if (x > -0.5) v += (x + 0.5) * (x + 0.5) * 3;
    loss.push_back(v);
  }
  return loss;
}

Suggestion run(SuggestMethod m, const std::vector<double>& lr, const std::vector<double>& loss,
               int64_t skip_begin = 10, int64_t skip_end = 1, Mode mode = Mode::kExponential) {
  return suggest(m, SuggestInput{lr, loss, mode, skip_begin, skip_end});
}

TEST(Gradient, ExactForQuadraticsOnUnevenGrids) {
  // Second-order central differences are exact for quadratics in the interior.
  const std::vector<double> x = {0.0, 0.3, 1.0, 1.1, 2.5, 4.0};
  std::vector<double> y;
  for (double v : x) y.push_back(3 * v * v - 2 * v + 1);
  const auto g = gradient(y, x);
  for (std::size_t i = 1; i + 1 < x.size(); ++i) EXPECT_NEAR(g[i], 6 * x[i] - 2, 1e-12) << i;
  // Ends: one-sided first differences, by hand.
  EXPECT_NEAR(g.front(), (y[1] - y[0]) / 0.3, 1e-12);
  EXPECT_NEAR(g.back(), (y[5] - y[4]) / 1.5, 1e-12);
}

TEST(Gradient, UniformGridIsPlainCentralDifference) {
  const std::vector<double> x = {0, 1, 2, 3, 4};
  const std::vector<double> y = {1, 4, 2, 8, 5};
  const auto g = gradient(y, x);
  EXPECT_DOUBLE_EQ(g[0], 3);
  EXPECT_DOUBLE_EQ(g[1], (2 - 1) / 2.0);
  EXPECT_DOUBLE_EQ(g[2], (8 - 4) / 2.0);
  EXPECT_DOUBLE_EQ(g[3], (5 - 2) / 2.0);
  EXPECT_DOUBLE_EQ(g[4], -3);
}

// Expected indices from tests/reference/suggest_reference.py (numpy + fastai's rules).
TEST(Suggest, MatchesNumpyReferenceOnSixtyPoints) {
  const auto lr = expLrs(60);
  const auto loss = referenceCurve(lr);
  EXPECT_EQ(run(SuggestMethod::kSteepest, lr, loss).index, 22);
  EXPECT_EQ(run(SuggestMethod::kValley, lr, loss).index, 27);
  EXPECT_EQ(run(SuggestMethod::kMinimum, lr, loss).index, 42);
  EXPECT_EQ(run(SuggestMethod::kSteep, lr, loss).index, 22);
  EXPECT_EQ(run(SuggestMethod::kSlide, lr, loss).index, 20);
}

TEST(Suggest, MatchesNumpyReferenceOnHundredPoints) {
  const auto lr = expLrs(100);
  const auto loss = referenceCurve(lr);
  const auto all = suggestAll(SuggestInput{lr, loss, Mode::kExponential, 10, 1});
  ASSERT_EQ(all.size(), 5u);
  const int64_t expected[] = {40, 49, 73, 40, 58};  // steepest, valley, minimum, steep, slide
  for (std::size_t i = 0; i < all.size(); ++i) {
    ASSERT_TRUE(all[i].found) << toString(all[i].method);
    EXPECT_EQ(all[i].index, expected[i]) << toString(all[i].method);
  }
  // lr values: the point's lr, except minimum which is a tenth of it.
  EXPECT_EQ(all[0].lr, lr[40]);
  EXPECT_EQ(all[2].lr, lr[73] / 10);
  EXPECT_EQ(all[4].lr, lr[58]);
}

TEST(Suggest, SteepestFollowsTheCurveNotTheIndex) {
  // loss = -tanh(4 (log10 lr + 3)): steepest descent exactly at lr = 1e-3.
  const auto lr = expLrs(61, 1e-6, 1.0);  // log10 lr on a 0.1 grid
  std::vector<double> loss;
  for (double v : lr) loss.push_back(-std::tanh(4 * (std::log10(v) + 3)));
  const auto s = run(SuggestMethod::kSteepest, lr, loss, 0, 0);
  ASSERT_TRUE(s.found);
  EXPECT_EQ(s.index, 30);
  EXPECT_NEAR(s.lr, 1e-3, 1e-12);
}

TEST(Suggest, LinearModeDifferentiatesWithRespectToLr) {
  // Linear lrs 0.1 … 1.0 and loss = (lr - 0.55)^3 * -1: gradient -3 (lr-0.55)^2 is most
  // negative at the ends; with first-order ends it is the first point (by hand:
  // -(0.2-0.55)^3 + (0.1-0.55)^3 over 0.1 = -0.4825 vs the last, -0.4825 too: the tie
  // goes to the first). Shift to make it unique: loss = -(lr - 0.5)^3.
  std::vector<double> lr, loss;
  for (int k = 0; k < 10; ++k) {
    lr.push_back(0.1 + 0.1 * k);
    loss.push_back(-std::pow(lr.back() - 0.5, 3));
  }
  const auto s = run(SuggestMethod::kSteepest, lr, loss, 0, 0, Mode::kLinear);
  ASSERT_TRUE(s.found);
  EXPECT_EQ(s.index, 9);  // |1.0-0.5| > |0.1-0.5|: the steepest end is the last one
}

TEST(Suggest, IndexRefersToTheFullCurveAfterNaNsAreDropped) {
  auto lr = expLrs(20);
  std::vector<double> loss;
  for (int k = 0; k < 20; ++k) loss.push_back(10.0 - k);
  loss[3] = kNaN;
  loss[4] = kNaN;
  // Minimum of the usable points (skip 2 at the start, 1 at the end): step 18.
  const auto s = run(SuggestMethod::kMinimum, lr, loss, 2, 1);
  ASSERT_TRUE(s.found);
  EXPECT_EQ(s.index, 18);
  EXPECT_EQ(s.lr, lr[18] / 10);
}

TEST(Suggest, AllNaNTailIsIgnored) {
  auto lr = expLrs(30);
  std::vector<double> loss;
  for (int k = 0; k < 30; ++k) loss.push_back(k < 15 ? 5.0 - 0.2 * k : kNaN);
  for (auto m : allSuggestMethods()) {
    const auto s = run(m, lr, loss, 0, 0);
    if (m == SuggestMethod::kSlide) {
      EXPECT_FALSE(s.found);  // 15 finite points < 16
      EXPECT_NE(s.note.find("16"), std::string::npos);
      continue;
    }
    ASSERT_TRUE(s.found) << toString(m);
    EXPECT_LT(s.index, 15) << toString(m);
  }
  EXPECT_EQ(run(SuggestMethod::kMinimum, lr, loss, 0, 0).index, 14);
}

TEST(Suggest, FlatCurve) {
  auto lr = expLrs(40);
  std::vector<double> loss(40, 1.5);
  // Zero gradient everywhere: argmin takes the first usable point.
  EXPECT_EQ(run(SuggestMethod::kSteepest, lr, loss).index, 10);
  EXPECT_EQ(run(SuggestMethod::kSteep, lr, loss).index, 10);
  EXPECT_EQ(run(SuggestMethod::kMinimum, lr, loss).index, 10);
  // No decreasing pair: the valley has length 1 at the start, so fastai's index is 0.
  EXPECT_EQ(run(SuggestMethod::kValley, lr, loss).index, 10);
  // Gradients all equal: the slide rule stops at once, 15 to the left of the end.
  EXPECT_EQ(run(SuggestMethod::kSlide, lr, loss).index, 38 - 15);
}

TEST(Suggest, TwoPoints) {
  const std::vector<double> lr = {1e-3, 1e-2};
  const std::vector<double> loss = {2.0, 1.0};
  const auto steepest = run(SuggestMethod::kSteepest, lr, loss, 0, 0);
  ASSERT_TRUE(steepest.found);
  EXPECT_EQ(steepest.index, 0);  // both one-sided gradients equal -1; the first wins
  const auto minimum = run(SuggestMethod::kMinimum, lr, loss, 0, 0);
  EXPECT_EQ(minimum.index, 1);
  EXPECT_DOUBLE_EQ(minimum.lr, 1e-3);
  // fastai's valley on [2, 1]: lds = [1, 2], start = 1 - 2 = -1, sections = 2/3,
  // idx = -1 + 0 + 0 = -1, which fastai wraps to the end; clamped here to 0.
  EXPECT_EQ(run(SuggestMethod::kValley, lr, loss, 0, 0).index, 0);
  EXPECT_FALSE(run(SuggestMethod::kSlide, lr, loss, 0, 0).found);
}

TEST(Suggest, FewerPointsThanTheSkipsGivesNoSuggestion) {
  auto lr = expLrs(8);
  std::vector<double> loss = {3, 2.5, 2, 1.5, 1, 0.8, 0.9, 5};
  for (auto m : allSuggestMethods()) {
    const auto s = run(m, lr, loss, 10, 1);
    EXPECT_FALSE(s.found) << toString(m);
    EXPECT_NE(s.note.find("need at least 2"), std::string::npos) << s.note;
  }
  EXPECT_FALSE(run(SuggestMethod::kSteepest, lr, loss, 6, 1).found);  // one point left
  EXPECT_TRUE(run(SuggestMethod::kSteepest, lr, loss, 5, 1).found);   // two left
}

TEST(Suggest, ValleyByHand) {
  // U shape, 31 points, bottom at 20, no skips. fastai: the longest decreasing run ends
  // at 20 with length 21, so start = 20 - 21 = -1, sections = 21/3 = 7,
  // idx = -1 + 7 + 3 = 9.
  auto lr = expLrs(31);
  std::vector<double> loss;
  for (int i = 0; i < 31; ++i) loss.push_back((i - 20) * (i - 20) / 100.0 + 1);
  const auto s = run(SuggestMethod::kValley, lr, loss, 0, 0);
  EXPECT_EQ(s.index, 9);
  EXPECT_EQ(s.lr, lr[9]);
}

TEST(Suggest, SteepByHand) {
  // Forward differences over ln(lr); the largest drop per unit ln(lr) is between 2 and 3.
  const std::vector<double> lr = {1e-4, 1e-3, 1e-2, 1e-1, 1.0};
  const std::vector<double> loss = {2.0, 1.9, 1.7, 1.0, 0.9};
  const auto s = run(SuggestMethod::kSteep, lr, loss, 0, 0);
  EXPECT_EQ(s.index, 2);
  EXPECT_EQ(s.lr, 1e-2);
}

// A curve whose steepest descent is its very first usable point (a noisy start): the
// warning names valley's pick inside the curve; a pick inside gives no warning.
TEST(Suggest, EdgePickWarnsWithAnotherMethodsValue) {
  auto lr = expLrs(40);
  std::vector<double> loss;
  for (int i = 0; i < 40; ++i) loss.push_back(i < 11 ? 3.0 - 0.1 * i : 2.0 - 0.01 * (i - 10) + (i > 30 ? 0.05 * (i - 30) : 0));
  loss[10] = 3.0;  // a plunge right after the first usable point (skip_begin 10)
  loss[11] = 1.0;
  const SuggestInput in{lr, loss, Mode::kExponential, 10, 1};
  const auto all = suggestAll(in);
  const auto& steepest = all[0];
  ASSERT_EQ(steepest.method, SuggestMethod::kSteepest);
  ASSERT_TRUE(steepest.found);
  ASSERT_EQ(steepest.index, 10) << "the fixture's steepest point is the first usable one";
  const std::string warning = edgeWarning(all, SuggestMethod::kSteepest, in);
  EXPECT_NE(warning.find("steepest picked the first usable point (step 10"), std::string::npos) << warning;
  EXPECT_NE(warning.find("valley suggests"), std::string::npos) << warning;
  // Valley's own pick lies inside: no warning for it.
  EXPECT_EQ(edgeWarning(all, SuggestMethod::kValley, in), "");
}

}  // namespace
}  // namespace lrfind::finder
