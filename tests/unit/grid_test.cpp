// runtime/grid: axes, refusals, grid order and the assignment of sweeps to rank groups.
// Links lrfind_grid alone: the grid needs no LibTorch.

#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "common/error.h"
#include "runtime/grid.h"

namespace lrfind::runtime {
namespace {

// A few of the CLI's flags, shared ones among them.
const std::vector<std::string> kFlags = {"optimizer", "seed",    "batch-size", "nesterov", "min-lr", "max-lr",
                                         "data",      "model",   "device",     "out",      "backend", "threads"};

const char* const kAxesList =
    "optimizer, momentum, nesterov, weight-decay, betas, eps, batch-size, accumulate, min-lr, max-lr, "
    "num-training, mode, beta, early-stop-threshold, seed, loss, precision";

// The InputError message of `parse`, or "" when it does not throw one.
template <typename F>
std::string inputError(F&& parse) {
  try {
    parse();
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

std::string parseError(const std::string& argument) {
  return inputError([&] { parseGridArgument(argument, kFlags); });
}

TEST(GridAxes, AreTheIssuesList) {
  const std::vector<std::string> expected = {"optimizer", "momentum", "nesterov",     "weight-decay", "betas", "eps",
                                             "batch-size", "accumulate", "min-lr",    "max-lr", "num-training", "mode",
                                             "beta",      "early-stop-threshold", "seed", "loss", "precision"};
  EXPECT_EQ(gridAxisNames(), expected);
}

TEST(GridParse, SplitsOnCommasAndTrimsSpaces) {
  const GridAxis axis = parseGridArgument(" optimizer = sgd , adam,adamw ", kFlags);
  EXPECT_EQ(axis.name, "optimizer");
  EXPECT_EQ(axis.values, (std::vector<std::string>{"sgd", "adam", "adamw"}));
  // Only the first '=' ends the name; values are kept as written.
  const GridAxis threshold = parseGridArgument("early-stop-threshold=none,4,1e+3", kFlags);
  EXPECT_EQ(threshold.values, (std::vector<std::string>{"none", "4", "1e+3"}));
  EXPECT_EQ(parseGridArgument("seed=7", kFlags).values, std::vector<std::string>{"7"});
}

TEST(GridParse, UnknownAxisSuggestsTheClosest) {
  EXPECT_EQ(parseError("optimiser=sgd,adam"),
            "--grid optimiser=sgd,adam: unknown axis \"optimiser\" (no such flag); did you mean optimizer?");
  EXPECT_EQ(parseError("lr-max=1,10"),
            "--grid lr-max=1,10: unknown axis \"lr-max\" (no such flag); did you mean max-lr?");
  EXPECT_EQ(parseError("colour=red"),
            std::string("--grid colour=red: unknown axis \"colour\" (no such flag); the axes are ") + kAxesList);
}

TEST(GridParse, SharedFlagsCannotBeAxes) {
  for (const std::string flag : {"data", "model", "device", "out", "backend", "threads"}) {
    EXPECT_EQ(parseError(flag + "=a,b"), "--grid " + flag + "=a,b: --" + flag +
                                             " cannot be a grid axis, it is shared by every sweep; the axes are " +
                                             kAxesList);
  }
}

TEST(GridParse, EmptyListsAndValues) {
  EXPECT_EQ(parseError("seed="), "--grid seed=: axis seed has no values; give at least one");
  EXPECT_EQ(parseError("seed= "), "--grid seed= : axis seed has no values; give at least one");
  EXPECT_EQ(parseError("seed"), "--grid seed: axis seed has no values; give at least one");
  EXPECT_EQ(parseError("seed=0,,1"), "--grid seed=0,,1: axis seed has an empty value (value 2 of 3)");
  EXPECT_EQ(parseError("seed=0, "), "--grid seed=0, : axis seed has an empty value (value 2 of 2)");
  EXPECT_EQ(inputError([] { checkGridAxis({"seed", {}}, "--config c.toml: [grid] seed", kFlags); }),
            "--config c.toml: [grid] seed: axis seed has no values; give at least one");
}

TEST(GridParse, RepeatedAxisIsRefused) {
  std::vector<GridAxis> grid;
  addGridAxis(grid, parseGridArgument("seed=0,1", kFlags), "--grid seed=0,1");
  addGridAxis(grid, parseGridArgument("optimizer=sgd", kFlags), "--grid optimizer=sgd");
  EXPECT_EQ(inputError([&] { addGridAxis(grid, parseGridArgument("seed=2", kFlags), "--grid seed=2"); }),
            "--grid seed=2: axis seed is given twice; give each axis once, in --grid or in the [grid] table of "
            "--config");
  EXPECT_EQ(grid.size(), 2u);
}

TEST(GridOrder, LastAxisVariesFastest) {
  const std::vector<GridAxis> grid = {{"optimizer", {"sgd", "adam"}}, {"seed", {"0", "1", "2"}}};
  ASSERT_EQ(gridSize(grid), 6u);
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"sgd", "0"}, {"sgd", "1"}, {"sgd", "2"}, {"adam", "0"}, {"adam", "1"}, {"adam", "2"}};
  const auto points = gridPoints(grid);
  ASSERT_EQ(points.size(), 6u);
  for (std::size_t i = 0; i < points.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(points[i].index, i);
    using Values = std::vector<std::pair<std::string, std::string>>;
    EXPECT_EQ(points[i].values, (Values{{"optimizer", expected[i].first}, {"seed", expected[i].second}}));
    EXPECT_EQ(points[i].arguments,
              (std::vector<std::string>{"--optimizer=" + expected[i].first, "--seed=" + expected[i].second}));
  }
}

TEST(GridOrder, ThreeAxesAsNestedLoops) {
  const std::vector<GridAxis> grid = {{"optimizer", {"sgd", "adam"}}, {"seed", {"0", "1", "2"}},
                                      {"batch-size", {"16", "32"}}};
  std::size_t i = 0;
  for (const auto& o : grid[0].values) {
    for (const auto& s : grid[1].values) {
      for (const auto& b : grid[2].values) {
        const GridPoint p = gridPoint(grid, i++);
        EXPECT_EQ(p.arguments, (std::vector<std::string>{"--optimizer=" + o, "--seed=" + s, "--batch-size=" + b}));
      }
    }
  }
  EXPECT_EQ(i, gridSize(grid));
  EXPECT_THROW(gridPoint(grid, 12), Error);
}

TEST(GridOrder, NoAxesIsOneSweepOfTheSharedFlags) {
  EXPECT_EQ(gridSize({}), 1u);
  const auto points = gridPoints({});
  ASSERT_EQ(points.size(), 1u);
  EXPECT_TRUE(points[0].values.empty());
  EXPECT_TRUE(points[0].arguments.empty());
}

TEST(GridOrder, TooManySweepsIsRefused) {
  const std::vector<GridAxis> grid = {{"seed", std::vector<std::string>(1001, "0")},
                                      {"optimizer", std::vector<std::string>(1000, "sgd")}};
  EXPECT_EQ(inputError([&] { gridSize(grid); }),
            "--grid: more than 1000000 sweeps (axis optimizer brings the product past it)");
  const std::vector<GridAxis> largest = {{"seed", std::vector<std::string>(1000, "0")},
                                         {"optimizer", std::vector<std::string>(1000, "a")}};
  EXPECT_EQ(gridSize(largest), 1000000u);
}

TEST(GridArguments, OneTokenPerAxis) {
  EXPECT_EQ(axisArguments("nesterov", "false"), std::vector<std::string>{"--nesterov=false"});
  EXPECT_EQ(axisArguments("nesterov", "true"), std::vector<std::string>{"--nesterov=true"});
  EXPECT_EQ(axisArguments("min-lr", "-1"), std::vector<std::string>{"--min-lr=-1"});
  EXPECT_EQ(axisArguments("betas", "0.9,0.999"), std::vector<std::string>{"--betas=0.9,0.999"});
}

TEST(GridGroups, LongestFirstWorkedExample) {
  // Costs 4 7 2 7 5 1 on 2 groups. By decreasing cost (ties: lower index): sweep 1 (7) -> g0
  // [7,0]; 3 (7) -> g1 [7,7]; 4 (5) -> g0, the lower of equal totals [12,7]; 0 (4) -> g1
  // [12,11]; 2 (2) -> g1 [12,13]; 5 (1) -> g0 [13,13].
  EXPECT_EQ(sweepGroups({4, 7, 2, 7, 5, 1}, 2), (std::vector<int>{1, 0, 1, 1, 0, 0}));
  // Equal costs go round the groups in index order.
  EXPECT_EQ(sweepGroups({1, 1, 1}, 2), (std::vector<int>{0, 1, 0}));
  EXPECT_EQ(sweepGroups({3, 3}, 4), (std::vector<int>{0, 1}));
  EXPECT_EQ(sweepGroups({5, 1, 9}, 1), (std::vector<int>{0, 0, 0}));
  EXPECT_TRUE(sweepGroups({}, 3).empty());
  EXPECT_THROW(sweepGroups({1}, 0), Error);
  EXPECT_THROW(sweepGroups({-1}, 1), Error);
}

TEST(GridGroups, CostIsStepsTimesBatchTimesAccumulate) {
  EXPECT_EQ(sweepCost(100, 32, 2), 6400.0);
  // A 2x2 grid of batch sizes 16 and 32 (100 steps, no accumulation) on 2 groups: both
  // 32s first, one per group, then the 16s.
  const double b16 = sweepCost(100, 16, 1), b32 = sweepCost(100, 32, 1);
  EXPECT_EQ(sweepGroups({b16, b32, b16, b32}, 2), (std::vector<int>{0, 0, 1, 1}));
  EXPECT_NE(std::string(kSweepGroupRule).find("longest first"), std::string::npos);
}

}  // namespace
}  // namespace lrfind::runtime
