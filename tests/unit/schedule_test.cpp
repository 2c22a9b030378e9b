#include "finder/schedule.h"

#include <cmath>
#include <functional>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "common/error.h"

namespace lrfind::finder {
namespace {

TEST(Schedule, ExponentialHitsBothEndsAndHasConstantRatio) {
  const int64_t n = 100;
  EXPECT_EQ(scheduledLr(0, n, 1e-8, 1.0, Mode::kExponential), 1e-8);
  EXPECT_EQ(scheduledLr(n - 1, n, 1e-8, 1.0, Mode::kExponential), 1.0);
  // By hand: the ratio between neighbours is (max/min)^(1/(N-1)) = 1e8^(1/99).
  const double ratio = std::pow(1e8, 1.0 / 99.0);
  for (int64_t k = 1; k < n; ++k) {
    const double r = scheduledLr(k, n, 1e-8, 1.0, Mode::kExponential) /
                     scheduledLr(k - 1, n, 1e-8, 1.0, Mode::kExponential);
    EXPECT_NEAR(r, ratio, 1e-12) << "step " << k;
  }
  // The middle of an even decade count is the geometric mean.
  EXPECT_NEAR(scheduledLr(2, 5, 1e-4, 1.0, Mode::kExponential), 1e-2, 1e-16);
}

TEST(Schedule, LinearStepsEvenly) {
  EXPECT_EQ(scheduledLr(0, 5, 0.1, 0.5, Mode::kLinear), 0.1);
  EXPECT_DOUBLE_EQ(scheduledLr(1, 5, 0.1, 0.5, Mode::kLinear), 0.2);
  EXPECT_DOUBLE_EQ(scheduledLr(2, 5, 0.1, 0.5, Mode::kLinear), 0.3);
  EXPECT_DOUBLE_EQ(scheduledLr(3, 5, 0.1, 0.5, Mode::kLinear), 0.4);
  EXPECT_EQ(scheduledLr(4, 5, 0.1, 0.5, Mode::kLinear), 0.5);
}

TEST(Schedule, TwoStepsAreTheTwoEnds) {
  for (auto mode : {Mode::kExponential, Mode::kLinear}) {
    EXPECT_EQ(scheduledLr(0, 2, 1e-5, 10.0, mode), 1e-5);
    EXPECT_EQ(scheduledLr(1, 2, 1e-5, 10.0, mode), 10.0);
  }
}

TEST(Schedule, StepOutsideTheScheduleThrows) {
  EXPECT_THROW(scheduledLr(5, 5, 1e-5, 1.0, Mode::kLinear), Error);
  EXPECT_THROW(scheduledLr(-1, 5, 1e-5, 1.0, Mode::kLinear), Error);
  EXPECT_THROW(scheduledLr(0, 1, 1e-5, 1.0, Mode::kLinear), Error);
}

// The library names its own fields; a caller's namer (the CLI's flags) replaces them.
TEST(SweepOptions, ValidateNamesTheFieldOrTheCallersName) {
  auto message = [](auto mutate, OptionNamer name) {
    SweepOptions o;
    mutate(o);
    try {
      validate(o, name);
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  OptionNamer flag = [](const char* field) { return std::string("--") + field; };
  const std::vector<std::pair<std::function<void(SweepOptions&)>, std::string>> cases = {
      {[](SweepOptions& o) { o.min_lr = 0; }, "min_lr"},
      {[](SweepOptions& o) { o.max_lr = o.min_lr; }, "max_lr"},
      {[](SweepOptions& o) { o.num_training = 1; }, "num_training"},
      {[](SweepOptions& o) { o.beta = 1.0; }, "beta"},
      {[](SweepOptions& o) { o.beta = -0.1; }, "beta"},
      {[](SweepOptions& o) { o.accumulate = 0; }, "accumulate"},
      {[](SweepOptions& o) { o.early_stop_threshold = -1.0; }, "early_stop_threshold"},
      {[](SweepOptions& o) { o.skip_end = -1; }, "skip_end"},
  };
  for (const auto& [mutate, field] : cases) {
    const std::string plain = message(mutate, fieldName);
    EXPECT_EQ(plain.rfind(field + " must be", 0), 0u) << plain;
    EXPECT_EQ(plain.find("--"), std::string::npos) << plain;
    EXPECT_EQ(message(mutate, flag).rfind("--" + field + " must be", 0), 0u) << message(mutate, flag);
  }
  EXPECT_EQ(message([](SweepOptions& o) { o.max_lr = o.min_lr; }, flag),
            "--max_lr must be greater than --min_lr (1e-08), got 1e-08");
  EXPECT_EQ(message([](SweepOptions& o) { o.early_stop_threshold.reset(); }, fieldName), "no error");
}

TEST(SweepOptions, NamesRoundTrip) {
  for (auto m : allSuggestMethods()) EXPECT_EQ(parseSuggestMethod(toString(m)), m);
  EXPECT_EQ(parseMode("linear"), Mode::kLinear);
  EXPECT_EQ(parseMode("exponential"), Mode::kExponential);
  EXPECT_THROW(parseMode("cosine"), InputError);
  EXPECT_THROW(parseSuggestMethod("best"), InputError);
}

}  // namespace
}  // namespace lrfind::finder
