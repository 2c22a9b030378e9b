#pragma once
// Learning-rate suggestions from a recorded curve (docs/algorithm.md). All methods first drop
// the first `skip_begin` and last `skip_end` points and every non-finite loss; with
// fewer than 2 points left there is no suggestion (found == false, `note` says why).
//
// - steepest: argmin of the central-difference gradient (numpy.gradient: second-order
//   in the interior, also on uneven spacing; first-order at the ends) of the loss with
//   respect to log10(lr) in exponential mode, to lr in linear mode.
// - valley, minimum, steep, slide: fastai's definitions (fastai/callback/schedule.py):
//   valley: the point about two thirds down the longest decreasing run (fastai's
//     longest-decreasing-subsequence walk, index clamped to the curve where fastai
//     would wrap around to the end on a 2-point valley);
//   minimum: lr of the lowest loss, divided by 10 (`index` is the lowest point);
//   steep: argmin of the forward difference of loss over ln(lr);
//   slide: the interval slide rule (lr_diff 15, threshold 0.005, adjust 1); needs at
//     least 16 points.
// `index` always refers to the full recorded curve (step k), never the filtered one.

#include <cstdint>
#include <string>
#include <vector>

#include "finder/options.h"

namespace lrfind::finder {

struct Suggestion {
  SuggestMethod method = SuggestMethod::kSteepest;
  bool found = false;
  double lr = 0.0;
  int64_t index = -1;
  std::string note;
};

struct SuggestInput {
  const std::vector<double>& lr;
  const std::vector<double>& loss;
  Mode mode = Mode::kExponential;
  int64_t skip_begin = 10;
  int64_t skip_end = 1;
  OptionNamer name = fieldName;  // how `note` names the options to change
};

Suggestion suggest(SuggestMethod method, const SuggestInput& in);
// Every method, in allSuggestMethods() order.
std::vector<Suggestion> suggestAll(const SuggestInput& in);

// When `chosen`'s pick is the first or the last point the methods see (a noisy curve's
// steepest descent at its very start, say), a warning that names another method whose
// pick lies inside, with its lr: valley first, then steepest, steep, minimum, slide.
// "" when the pick is inside, or when no other method has a pick inside to offer.
std::string edgeWarning(const std::vector<Suggestion>& all, SuggestMethod chosen, const SuggestInput& in);

// numpy.gradient(y, x) with edge_order=1; x strictly increasing, y.size() >= 2.
std::vector<double> gradient(const std::vector<double>& y, const std::vector<double>& x);

}  // namespace lrfind::finder
