#include "finder/smoothing.h"

#include <cmath>
#include <limits>
#include <optional>
#include <vector>

#include <gtest/gtest.h>

namespace lrfind::finder {
namespace {

// The closed form of the bias-corrected EMA, computed independently of the recursion:
// smoothed_k = sum_i (1-b) b^(k-i) x_i / (1 - b^(k+1)).
double closedForm(const std::vector<double>& x, std::size_t k, double beta) {
  double sum = 0;
  for (std::size_t i = 0; i <= k; ++i) sum += (1 - beta) * std::pow(beta, static_cast<double>(k - i)) * x[i];
  return sum / (1 - std::pow(beta, static_cast<double>(k + 1)));
}

TEST(EmaSmoother, MatchesClosedForm) {
  const std::vector<double> x = {2.3, 2.1, 2.25, 1.9, 1.7, 1.8, 1.2, 0.9, 1.4, 3.0};
  for (double beta : {0.5, 0.9, 0.98}) {
    EmaSmoother s(beta);
    for (std::size_t k = 0; k < x.size(); ++k) {
      EXPECT_NEAR(s.update(x[k]), closedForm(x, k, beta), 1e-12) << "beta " << beta << " step " << k;
    }
  }
}

TEST(EmaSmoother, FirstValueIsUnbiasedAndBetaZeroIsRaw) {
  EmaSmoother s(0.98);
  EXPECT_DOUBLE_EQ(s.update(3.5), 3.5);  // by hand: 0.02*3.5 / (1-0.98)
  EmaSmoother raw(0.0);
  for (double v : {1.0, 5.0, -2.0}) EXPECT_EQ(raw.update(v), v);
}

TEST(EmaSmoother, ConstantInputStaysConstant) {
  EmaSmoother s(0.98);
  for (int k = 0; k < 200; ++k) EXPECT_NEAR(s.update(1.25), 1.25, 1e-12);
}

TEST(StopRule, DivergesWhenAboveThresholdTimesBest) {
  // best: 10, 8, 5, 5 ; step 4 has 21 > 4*5 -> diverged.
  StopRule rule(4.0, 100);
  const std::vector<double> s = {10, 8, 5, 19.9, 21};
  for (int64_t k = 0; k < 4; ++k) EXPECT_EQ(rule.observe(k, s[k], s[k]), StopReason::kRunning) << k;
  EXPECT_EQ(rule.best(), 5);
  EXPECT_EQ(rule.observe(4, s[4], s[4]), StopReason::kDiverged);
}

TEST(StopRule, BestStartsAtStepZeroEvenWhenHigh) {
  // A first value above later ones: step 1 is compared to step 0's value, not to 0.
  StopRule rule(2.0, 10);
  EXPECT_EQ(rule.observe(0, 100, 100), StopReason::kRunning);
  EXPECT_EQ(rule.observe(1, 150, 150), StopReason::kRunning);  // 150 < 2*100
  EXPECT_EQ(rule.observe(2, 50, 50), StopReason::kRunning);
  EXPECT_EQ(rule.observe(3, 101, 101), StopReason::kDiverged);  // 101 > 2*50
}

TEST(StopRule, NoneNeverDiverges) {
  StopRule rule(std::nullopt, 4);
  EXPECT_EQ(rule.observe(0, 1, 1), StopReason::kRunning);
  EXPECT_EQ(rule.observe(1, 1e6, 1e6), StopReason::kRunning);
  EXPECT_EQ(rule.observe(2, 1e9, 1e9), StopReason::kRunning);
  EXPECT_EQ(rule.observe(3, 1e12, 1e12), StopReason::kCompleted);
}

TEST(StopRule, NonFiniteStopsAtOnce) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  StopRule a(4.0, 10);
  EXPECT_EQ(a.observe(0, nan, nan), StopReason::kNonFinite);
  StopRule b(std::nullopt, 10);
  EXPECT_EQ(b.observe(0, 1, 1), StopReason::kRunning);
  EXPECT_EQ(b.observe(1, inf, 2), StopReason::kNonFinite);
}

TEST(StopRule, LastStepCompletesEvenWithTwoSteps) {
  StopRule rule(4.0, 2);
  EXPECT_EQ(rule.observe(0, 1, 1), StopReason::kRunning);
  EXPECT_EQ(rule.observe(1, 1, 1), StopReason::kCompleted);
}


// A loss curve run through the EMA and the rule: where it stopped, how and why.
struct CurveRun {
  StopReason reason = StopReason::kRunning;
  int64_t step = -1;
  StopRule rule{4.0, 0};
};

CurveRun runCurve(const std::vector<double>& raw, std::optional<double> threshold = 4.0, double beta = 0.98) {
  CurveRun r;
  r.rule = StopRule(threshold, static_cast<int64_t>(raw.size()));
  EmaSmoother ema(beta);
  for (std::size_t k = 0; k < raw.size(); ++k) {
    r.reason = r.rule.observe(static_cast<int64_t>(k), raw[k], ema.update(raw[k]));
    r.step = static_cast<int64_t>(k);
    if (r.reason != StopReason::kRunning) break;
  }
  return r;
}

// A range-test-shaped curve: flat with noise, a descent, then a blow-up at step 80.
std::vector<double> rangeCurve(double shift) {
  std::vector<double> raw;
  for (int k = 0; k < 100; ++k) {
    const double noise = 0.02 * std::sin(1.7 * k) * std::cos(0.3 * k * k);
    const double descent = k < 40 ? 2.3 : k < 70 ? 2.3 - 0.06 * (k - 40) : 0.5 + 0.4 * (k - 70) * (k - 70);
    raw.push_back(descent + noise + shift);
  }
  return raw;
}

TEST(StopRule, PositiveCurvesStopByTheRatioAsBefore) {
  const CurveRun r = runCurve(rangeCurve(0));
  EXPECT_EQ(r.reason, StopReason::kDiverged);
  EXPECT_EQ(r.rule.decidedBy(), StopTest::kRatio);
  EXPECT_GT(r.rule.scale(), 0);  // fixed, though the ratio decided
}

// The same curve shifted by -10 lies entirely below zero: the ratio would stop at step 1
// (-7.7 > 4 x -7.7); the shift test stops it after the minimum, in the blow-up.
TEST(StopRule, CurveBelowZeroStopsAfterItsMinimumByTheShiftTest) {
  const CurveRun r = runCurve(rangeCurve(-10));
  EXPECT_EQ(r.reason, StopReason::kDiverged);
  EXPECT_EQ(r.rule.decidedBy(), StopTest::kShift);
  EXPECT_GT(r.step, 70) << "not while the loss still falls";
  EXPECT_LT(r.step, 90);
}

// Crossing zero: the ratio while best > 0, the shift test after.
TEST(StopRule, CurveCrossingZeroStopsByTheShiftTest) {
  const CurveRun r = runCurve(rangeCurve(-2.0));  // from 0.3 down to -1.5
  EXPECT_EQ(r.reason, StopReason::kDiverged);
  EXPECT_EQ(r.rule.decidedBy(), StopTest::kShift);
  EXPECT_GT(r.step, 70);
}

// Exactly 0 (a loss already at its floor) runs to the end; a rise from 0 stops it.
TEST(StopRule, LossAtExactlyZeroCompletesAndARiseFromZeroStops) {
  const CurveRun flat = runCurve(std::vector<double>(50, 0.0));
  EXPECT_EQ(flat.reason, StopReason::kCompleted);
  EXPECT_EQ(flat.rule.scale(), kStopFloor);
  std::vector<double> rise(50, 0.0);
  for (int k = 30; k < 50; ++k) rise[static_cast<std::size_t>(k)] = 1e-3 * (k - 29);
  const CurveRun r = runCurve(rise);
  EXPECT_EQ(r.reason, StopReason::kDiverged);
  EXPECT_EQ(r.rule.decidedBy(), StopTest::kShift);
  EXPECT_EQ(r.step, 30);
}

// A model at float noise (MSE ~1e-13 wobbling by 4x and more) does not diverge on it.
TEST(StopRule, FloatNoiseLossDoesNotDiverge) {
  std::vector<double> raw;
  for (int k = 0; k < 100; ++k) raw.push_back(1e-13 * (1.0 + 4.0 * std::abs(std::sin(2.3 * k))));
  const CurveRun r = runCurve(raw, 4.0, 0.0);  // unsmoothed: the harshest case
  EXPECT_EQ(r.reason, StopReason::kCompleted);
}

// Before the scale is fixed the shift test cannot stop a sweep.
TEST(StopRule, ShiftTestWaitsForItsScale) {
  StopRule rule(4.0, 100);
  EXPECT_EQ(rule.observe(0, -1, -1), StopReason::kRunning);
  EXPECT_EQ(rule.observe(1, 50, 50), StopReason::kRunning);
  EXPECT_TRUE(std::isnan(rule.scale()));
}

}  // namespace
}  // namespace lrfind::finder
