#include "runtime/grid_summary.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "common/error.h"

namespace lrfind::runtime {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

bool hasAxis(const std::vector<GridAxis>& axes, const std::string& name) {
  return std::any_of(axes.begin(), axes.end(), [&](const GridAxis& a) { return a.name == name; });
}

// The lr of the sweep's chosen suggestion; NaN when it found none. SweepResult::suggestion()
// would do the lookup, but it throws on a sweep without suggestions (one cut short before
// they were computed) and lives in lrfind_finder, which brings LibTorch: this file stays
// in the LibTorch-free lrfind_grid.
double chosenLr(const finder::SweepResult& result) {
  for (const auto& s : result.suggestions) {
    if (s.method != result.method) continue;
    return s.found && std::isfinite(s.lr) && s.lr > 0 ? s.lr : kNaN;
  }
  return kNaN;
}

// The sweeps grouped by their label without `axis`, the groups in
// the order of their first sweep, each group's sweeps in grid order.
std::vector<std::pair<std::string, std::vector<const GridSweep*>>> groupBy(const std::vector<GridSweep>& sweeps,
                                                                        const std::string& axis) {
  std::vector<std::pair<std::string, std::vector<const GridSweep*>>> groups;
  for (const auto& sweep : sweeps) {
    const std::string label = axisLabel(sweep, axis);
    auto it = std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return g.first == label; });
    if (it == groups.end()) {
      groups.push_back({label, {}});
      it = groups.end() - 1;
    }
    it->second.push_back(&sweep);
  }
  for (auto& g : groups) {
    std::stable_sort(g.second.begin(), g.second.end(),
                     [](const GridSweep* a, const GridSweep* b) { return a->index < b->index; });
  }
  return groups;
}

SeedGroup seedGroup(const std::string& label, const std::vector<const GridSweep*>& members) {
  SeedGroup g;
  g.label = label;
  std::vector<double> log_lr;
  for (const GridSweep* s : members) {
    g.sweeps.push_back(s->index);
    const double lr = chosenLr(s->result);
    if (std::isfinite(lr)) log_lr.push_back(std::log10(lr));
  }
  g.found = static_cast<int>(log_lr.size());
  if (log_lr.empty()) {
    g.median_lr = g.log10_min = g.log10_max = g.log10_iqr = kNaN;
  } else {
    g.median_lr = std::pow(10.0, quantile(log_lr, 0.5));
    g.log10_min = *std::min_element(log_lr.begin(), log_lr.end());
    g.log10_max = *std::max_element(log_lr.begin(), log_lr.end());
    g.log10_iqr = quantile(log_lr, 0.75) - quantile(log_lr, 0.25);
  }

  // The band, step by step while any sweep still has a finite point there: sweeps that
  // stopped early (diverged) drop out, the others carry on.
  for (std::size_t k = 0;; ++k) {
    std::vector<double> at;
    double lr = kNaN;
    for (const GridSweep* s : members) {
      const auto& r = s->result;
      if (k >= r.loss.size() || k >= r.lr.size() || !std::isfinite(r.loss[k])) continue;
      if (at.empty()) lr = r.lr[k];
      at.push_back(r.loss[k]);
    }
    if (at.empty()) break;
    g.lr.push_back(lr);
    g.loss_min.push_back(*std::min_element(at.begin(), at.end()));
    g.loss_max.push_back(*std::max_element(at.begin(), at.end()));
    g.loss_median.push_back(quantile(std::move(at), 0.5));
  }
  return g;
}

BatchFit batchFit(const std::string& label, const std::vector<const GridSweep*>& members) {
  BatchFit f;
  f.label = label;
  for (const GridSweep* s : members) {
    const double lr = chosenLr(s->result);
    const auto batch = static_cast<double>(s->info.global_batch_size);
    if (!std::isfinite(lr) || !(batch > 0)) continue;
    f.sweeps.push_back(s->index);
    f.batch.push_back(batch);
    f.lr.push_back(lr);
  }
  std::vector<double> distinct = f.batch;
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  if (distinct.size() < 2) {
    f.alpha = f.intercept = f.residual = kNaN;
    return f;
  }
  // Ordinary least squares on centred values (no cancellation of large sums).
  const auto n = static_cast<double>(f.batch.size());
  std::vector<double> x, y;
  double xm = 0, ym = 0;
  for (std::size_t i = 0; i < f.batch.size(); ++i) {
    x.push_back(std::log10(f.batch[i]));
    y.push_back(std::log10(f.lr[i]));
    xm += x.back();
    ym += y.back();
  }
  xm /= n;
  ym /= n;
  double sxx = 0, sxy = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    sxx += (x[i] - xm) * (x[i] - xm);
    sxy += (x[i] - xm) * (y[i] - ym);
  }
  f.alpha = sxy / sxx;
  f.intercept = ym - f.alpha * xm;
  double ss = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double e = y[i] - (f.intercept + f.alpha * x[i]);
    ss += e * e;
  }
  f.residual = std::sqrt(ss / n);
  return f;
}

}  // namespace

std::string axisLabel(const GridSweep& sweep, const std::string& skip) {
  std::string out;
  for (const auto& [axis, value] : sweep.values) {
    if (axis == skip) continue;
    out += concat(out.empty() ? "" : ", ", axis, "=", value);
  }
  return out;
}

double quantile(std::vector<double> values, double q) {
  LRFIND_CHECK(!values.empty(), "quantile of no values");
  LRFIND_CHECK(q >= 0 && q <= 1, "quantile ", q, " is not in [0, 1]");
  // numpy's answer to a NaN among the values; std::sort would not order them.
  if (std::any_of(values.begin(), values.end(), [](double v) { return std::isnan(v); })) return kNaN;
  std::sort(values.begin(), values.end());
  const double h = q * static_cast<double>(values.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(h));
  if (lo + 1 >= values.size()) return values.back();
  const double t = h - static_cast<double>(lo);
  const double a = values[lo], b = values[lo + 1];
  // numpy's _lerp: from the nearer end, so that t = 1 gives b exactly.
  return t >= 0.5 ? b - (b - a) * (1 - t) : a + (b - a) * t;
}

GridSummary summarizeGrid(const std::vector<GridAxis>& axes, const std::vector<GridSweep>& sweeps) {
  GridSummary summary;
  if (hasAxis(axes, "seed")) {
    for (const auto& [label, members] : groupBy(sweeps, "seed")) {
      summary.seed_groups.push_back(seedGroup(label, members));
    }
  }
  if (hasAxis(axes, "batch-size")) {
    for (const auto& [label, members] : groupBy(sweeps, "batch-size")) {
      summary.batch_fits.push_back(batchFit(label, members));
    }
  }
  return summary;
}

}  // namespace lrfind::runtime
