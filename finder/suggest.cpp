#include "finder/suggest.h"

#include <algorithm>
#include <cmath>

#include "common/error.h"

namespace lrfind::finder {
namespace {

constexpr int64_t kSlideLrDiff = 15;
constexpr double kSlideThreshold = 0.005;
constexpr double kSlideAdjust = 1.0;

// The points the methods see: finite losses inside the skip window, with their steps.
struct Points {
  std::vector<int64_t> step;
  std::vector<double> lr;
  std::vector<double> loss;
  std::size_t size() const { return loss.size(); }
};

Points usablePoints(const SuggestInput& in) {
  LRFIND_CHECK(in.lr.size() == in.loss.size(), "lr and loss differ in length: ", in.lr.size(),
               " vs ", in.loss.size());
  Points p;
  const auto n = static_cast<int64_t>(in.loss.size());
  for (int64_t k = std::max<int64_t>(0, in.skip_begin); k < n - std::max<int64_t>(0, in.skip_end);
       ++k) {
    if (std::isfinite(in.loss[k]) && std::isfinite(in.lr[k]) && in.lr[k] > 0) {
      p.step.push_back(k);
      p.lr.push_back(in.lr[k]);
      p.loss.push_back(in.loss[k]);
    }
  }
  return p;
}

std::size_t argmin(const std::vector<double>& v) {
  return static_cast<std::size_t>(std::min_element(v.begin(), v.end()) - v.begin());
}

Suggestion at(SuggestMethod method, const Points& p, std::size_t i, double lr) {
  Suggestion s;
  s.method = method;
  s.found = true;
  s.lr = lr;
  s.index = p.step[i];
  return s;
}

Suggestion steepest(const Points& p, Mode mode) {
  std::vector<double> x(p.lr);
  if (mode == Mode::kExponential) {
    for (auto& v : x) v = std::log10(v);
  }
  const auto i = argmin(gradient(p.loss, x));
  return at(SuggestMethod::kSteepest, p, i, p.lr[i]);
}

Suggestion valley(const Points& p) {
  // fastai's walk, including where it updates max_start (inside the inner loop).
  const auto n = static_cast<int64_t>(p.size());
  std::vector<int64_t> lds(n, 1);
  int64_t max_start = 0, max_end = 0;
  for (int64_t i = 1; i < n; ++i) {
    for (int64_t j = 0; j < i; ++j) {
      if (p.loss[i] < p.loss[j] && lds[i] < lds[j] + 1) {
        lds[i] = lds[j] + 1;
      }
      if (lds[max_end] < lds[i]) {
        max_end = i;
        max_start = max_end - lds[max_end];
      }
    }
  }
  const double sections = static_cast<double>(max_end - max_start) / 3.0;
  int64_t idx = max_start + static_cast<int64_t>(sections) + static_cast<int64_t>(sections / 2);
  idx = std::clamp<int64_t>(idx, 0, n - 1);
  return at(SuggestMethod::kValley, p, static_cast<std::size_t>(idx), p.lr[idx]);
}

Suggestion minimum(const Points& p) {
  const auto i = argmin(p.loss);
  return at(SuggestMethod::kMinimum, p, i, p.lr[i] / 10.0);
}

Suggestion steep(const Points& p) {
  std::vector<double> g(p.size() - 1);
  for (std::size_t i = 0; i + 1 < p.size(); ++i) {
    g[i] = (p.loss[i + 1] - p.loss[i]) / (std::log(p.lr[i + 1]) - std::log(p.lr[i]));
  }
  const auto i = argmin(g);
  return at(SuggestMethod::kSteep, p, i, p.lr[i]);
}

Suggestion slide(const Points& p) {
  const auto n = static_cast<int64_t>(p.size());
  if (n <= kSlideLrDiff) {
    Suggestion s;
    s.method = SuggestMethod::kSlide;
    s.note = concat("slide needs at least ", kSlideLrDiff + 1, " usable points, the curve has ", n);
    return s;
  }
  std::vector<double> unit(p.size());
  for (std::size_t i = 0; i < unit.size(); ++i) unit[i] = static_cast<double>(i);
  const auto g = gradient(p.loss, unit);
  int64_t r = n - 1;
  int64_t l = r - kSlideLrDiff;
  int64_t chosen = l;
  while (l >= 0 && std::abs(g[r] - g[l]) > kSlideThreshold) {
    chosen = l;
    --r;
    --l;
  }
  return at(SuggestMethod::kSlide, p, static_cast<std::size_t>(chosen), p.lr[chosen] * kSlideAdjust);
}

}  // namespace

std::vector<double> gradient(const std::vector<double>& y, const std::vector<double>& x) {
  const std::size_t n = y.size();
  LRFIND_CHECK(n >= 2 && x.size() == n, "gradient needs >= 2 points and matching x");
  std::vector<double> g(n);
  g[0] = (y[1] - y[0]) / (x[1] - x[0]);
  g[n - 1] = (y[n - 1] - y[n - 2]) / (x[n - 1] - x[n - 2]);
  for (std::size_t i = 1; i + 1 < n; ++i) {
    const double h0 = x[i] - x[i - 1];
    const double h1 = x[i + 1] - x[i];
    // numpy's h0²·y[i+1] − h1²·y[i−1] + (h1²−h0²)·y[i], regrouped into differences so
    // that a flat stretch gives exactly 0 rather than rounding noise.
    g[i] = (h0 * h0 * (y[i + 1] - y[i]) + h1 * h1 * (y[i] - y[i - 1])) / (h0 * h1 * (h0 + h1));
  }
  return g;
}

namespace {

Suggestion suggestOn(SuggestMethod method, const Points& p, const SuggestInput& in) {
  if (p.size() < 2) {
    Suggestion s;
    s.method = method;
    s.note = concat("only ", p.size(), " usable point(s) of ", in.loss.size(), " recorded after skipping ",
                    in.skip_begin, " at the start, ", in.skip_end,
                    " at the end and non-finite losses; need at least 2 (lower ", in.name("skip_begin"), "/",
                    in.name("skip_end"), " or raise ", in.name("num_training"), ")");
    return s;
  }
  switch (method) {
    case SuggestMethod::kSteepest: return steepest(p, in.mode);
    case SuggestMethod::kValley: return valley(p);
    case SuggestMethod::kMinimum: return minimum(p);
    case SuggestMethod::kSteep: return steep(p);
    case SuggestMethod::kSlide: return slide(p);
  }
  LRFIND_CHECK(false, "unknown suggestion method");
  return {};
}

}  // namespace

Suggestion suggest(SuggestMethod method, const SuggestInput& in) { return suggestOn(method, usablePoints(in), in); }

std::string edgeWarning(const std::vector<Suggestion>& all, SuggestMethod chosen, const SuggestInput& in) {
  const Points p = usablePoints(in);
  if (p.size() < 3) return "";
  const int64_t first = p.step.front(), last = p.step.back();
  auto pick = [&](SuggestMethod m) -> const Suggestion* {
    for (const auto& s : all) {
      if (s.method == m && s.found) return &s;
    }
    return nullptr;
  };
  const Suggestion* mine = pick(chosen);
  if (mine == nullptr || (mine->index != first && mine->index != last)) return "";
  for (const auto m : {SuggestMethod::kValley, SuggestMethod::kSteepest, SuggestMethod::kSteep, SuggestMethod::kMinimum,
                       SuggestMethod::kSlide}) {
    const Suggestion* other = m == chosen ? nullptr : pick(m);
    if (other == nullptr || other->index == first || other->index == last) continue;
    return concat(toString(chosen), " picked the ", mine->index == first ? "first" : "last", " usable point (step ",
                  mine->index, ", lr ", mine->lr, "): the curve may be too noisy there, or ", in.name("max_lr"),
                  " too low to reach the end of the descent; ", toString(m), " suggests ", other->lr, " (",
                  in.name("suggest"), " ", toString(m), ")");
  }
  return "";
}

std::vector<Suggestion> suggestAll(const SuggestInput& in) {
  const Points p = usablePoints(in);  // filtered once for all methods
  std::vector<Suggestion> out;
  for (auto m : allSuggestMethods()) out.push_back(suggestOn(m, p, in));
  return out;
}

}  // namespace lrfind::finder
