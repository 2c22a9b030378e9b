#include "runtime/grid.h"

#include <algorithm>
#include <numeric>

#include "common/closest_name.h"
#include "common/error.h"

namespace lrfind::runtime {
namespace {

std::string trimmed(const std::string& text) {
  const auto first = text.find_first_not_of(" \t");
  if (first == std::string::npos) return "";
  return text.substr(first, text.find_last_not_of(" \t") - first + 1);
}

std::string joined(const std::vector<std::string>& names) {
  std::string text;
  for (const auto& n : names) text += (text.empty() ? "" : ", ") + n;
  return text;
}

}  // namespace

const std::vector<std::string>& gridAxisNames() {
  static const std::vector<std::string> names = {
      "optimizer", "momentum", "nesterov", "weight-decay", "betas", "eps", "batch-size", "accumulate",
      "min-lr", "max-lr", "num-training", "mode", "beta", "early-stop-threshold", "seed", "loss", "precision"};
  return names;
}

const char* const kSweepGroupRule =
    "longest first: sweeps in order of decreasing cost (--num-training x --batch-size x --accumulate; equal "
    "costs: the lower sweep index first), each to the group with the least total cost so far (equal totals: "
    "the lower group)";

void checkGridAxis(const GridAxis& axis, const std::string& where, const std::vector<std::string>& flags) {
  const auto& axes = gridAxisNames();
  if (std::find(axes.begin(), axes.end(), axis.name) == axes.end()) {
    const bool is_flag = std::find(flags.begin(), flags.end(), axis.name) != flags.end();
    LRFIND_INPUT_CHECK(!is_flag, where, ": --", axis.name,
                       " cannot be a grid axis, it is shared by every sweep; the axes are ", joined(axes));
    const std::string near = closestName(axis.name, axes);
    throw InputError(concat(where, ": unknown axis \"", axis.name, "\" (no such flag); ",
                            near.empty() ? concat("the axes are ", joined(axes)) : concat("did you mean ", near, "?")));
  }
  LRFIND_INPUT_CHECK(!axis.values.empty(), where, ": axis ", axis.name, " has no values; give at least one");
  for (std::size_t i = 0; i < axis.values.size(); ++i) {
    LRFIND_INPUT_CHECK(!axis.values[i].empty(), where, ": axis ", axis.name, " has an empty value (value ", i + 1,
                       " of ", axis.values.size(), ")");
  }
}

GridAxis parseGridArgument(const std::string& argument, const std::vector<std::string>& flags) {
  const std::string where = concat("--grid ", argument);
  const auto equals = argument.find('=');
  GridAxis axis;
  axis.name = trimmed(argument.substr(0, equals));
  // "seed" and "seed=" are an empty list, not one empty value.
  const std::string list = equals == std::string::npos ? "" : argument.substr(equals + 1);
  if (!trimmed(list).empty()) {
    std::size_t start = 0;
    for (;;) {
      const auto comma = list.find(',', start);
      axis.values.push_back(trimmed(list.substr(start, comma - start)));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  checkGridAxis(axis, where, flags);
  return axis;
}

void addGridAxis(std::vector<GridAxis>& grid, GridAxis axis, const std::string& where) {
  for (const auto& a : grid) {
    LRFIND_INPUT_CHECK(a.name != axis.name, where, ": axis ", axis.name,
                       " is given twice; give each axis once, in --grid or in the [grid] table of --config");
  }
  grid.push_back(std::move(axis));
}

std::size_t gridSize(const std::vector<GridAxis>& grid) {
  std::size_t size = 1;
  for (const auto& a : grid) {
    LRFIND_CHECK(!a.values.empty(), "grid axis ", a.name, " has no values");
    LRFIND_INPUT_CHECK(a.values.size() <= kMaxGridSweeps / size, "--grid: more than ", kMaxGridSweeps,
                       " sweeps (axis ", a.name, " brings the product past it)");
    size *= a.values.size();
  }
  return size;
}

std::vector<std::string> axisArguments(const std::string& axis, const std::string& value) {
  return {concat("--", axis, "=", value)};
}

GridPoint gridPoint(const std::vector<GridAxis>& grid, std::size_t index) {
  const std::size_t size = gridSize(grid);
  LRFIND_CHECK(index < size, "sweep ", index, " of a grid of ", size);
  GridPoint point;
  point.index = index;
  point.values.resize(grid.size());
  // Mixed radix, the last axis the least significant digit.
  std::size_t rest = index;
  for (std::size_t a = grid.size(); a-- > 0;) {
    const auto& values = grid[a].values;
    point.values[a] = {grid[a].name, values[rest % values.size()]};
    rest /= values.size();
  }
  for (const auto& [axis, value] : point.values) {
    for (auto& arg : axisArguments(axis, value)) point.arguments.push_back(std::move(arg));
  }
  return point;
}

std::vector<GridPoint> gridPoints(const std::vector<GridAxis>& grid) {
  std::vector<GridPoint> points;
  const std::size_t size = gridSize(grid);
  points.reserve(size);
  for (std::size_t i = 0; i < size; ++i) points.push_back(gridPoint(grid, i));
  return points;
}

std::string describeGridPoint(const GridPoint& point) {
  std::string text = concat("sweep ", point.index);
  for (std::size_t a = 0; a < point.values.size(); ++a) {
    text += concat(a == 0 ? " (" : ", ", point.values[a].first, "=", point.values[a].second);
  }
  return point.values.empty() ? text : text + ")";
}

double sweepCost(int64_t num_training, int64_t batch_size, int64_t accumulate) {
  return static_cast<double>(num_training) * static_cast<double>(batch_size) * static_cast<double>(accumulate);
}

std::vector<int> sweepGroups(const std::vector<double>& costs, int groups) {
  LRFIND_CHECK(groups >= 1, "groups = ", groups);
  for (double c : costs) LRFIND_CHECK(c >= 0, "sweep cost ", c);
  std::vector<std::size_t> order(costs.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return costs[a] > costs[b]; });
  std::vector<double> load(static_cast<std::size_t>(groups), 0.0);
  std::vector<int> group(costs.size(), 0);
  for (std::size_t sweep : order) {
    // min_element returns the first of equal totals: the lower group.
    const auto least = std::min_element(load.begin(), load.end());
    group[sweep] = static_cast<int>(least - load.begin());
    *least += costs[sweep];
  }
  return group;
}

}  // namespace lrfind::runtime
