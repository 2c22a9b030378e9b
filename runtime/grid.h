#pragma once
// The tuning grid (--grid, [grid]): axes, the sweeps they span, and which rank group
// runs which sweep. Names are the CLI's: an axis is a flag without its leading "--",
// and its values are the strings that flag takes. LibTorch-free, no I/O, no state: the
// same input gives the same grid on every rank. Errors are InputError, one line that
// names the axis.

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace lrfind::runtime {

struct GridAxis {
  std::string name;                 // a flag without "--": "optimizer"
  std::vector<std::string> values;  // as the flag takes them: "sgd", "0.9"
};

inline bool operator==(const GridAxis& a, const GridAxis& b) { return a.name == b.name && a.values == b.values; }

// The flags that may vary per sweep, in --help's order. Every other flag (--data,
// --model, --device, --out, --backend, ...) is shared by every sweep.
const std::vector<std::string>& gridAxisNames();

// Checks one axis from any source: its name is in gridAxisNames() and it has at least
// one value, none empty. `where` starts the message ("--grid seed=0,,1"); `flags` are
// all the CLI's flag names without "--", to tell an unknown name (with the closest axis
// suggested) from a flag that cannot vary.
void checkGridAxis(const GridAxis& axis, const std::string& where, const std::vector<std::string>& flags);

// Parses one --grid argument, "AXIS=v1,v2,...": split on the first '=', the values on
// every ',' (a value cannot hold a comma), spaces around names and values trimmed.
// Then checkGridAxis().
GridAxis parseGridArgument(const std::string& argument, const std::vector<std::string>& flags);

// Appends `axis` to `grid`, refusing an axis already there (from --grid or [grid]).
void addGridAxis(std::vector<GridAxis>& grid, GridAxis axis, const std::string& where);

// The number of sweeps: the product of the axes' sizes; 1 for no axes (one sweep, of
// the shared flags). InputError past kMaxGridSweeps.
constexpr std::size_t kMaxGridSweeps = 1000000;
std::size_t gridSize(const std::vector<GridAxis>& grid);

// The command-line arguments that set an axis to a value: {"--AXIS=VALUE"}, one token,
// so that a value starting with '-' stays a value. This holds for --nesterov too, a flag
// whose value is true or false ("--nesterov=false" turns it off even where the shared
// flags turn it on). Appended after the shared flags, they replace the flag's value there
// (the CLI parses a grid point with the axes' flags taking the last value).
std::vector<std::string> axisArguments(const std::string& axis, const std::string& value);

// One sweep of the grid.
struct GridPoint {
  std::size_t index = 0;                                   // in grid order
  std::vector<std::pair<std::string, std::string>> values;  // (axis, value), axes in grid order
  std::vector<std::string> arguments;                       // axisArguments() of each, in the same order
};

// Grid order: sweep i = 0, 1, ... as nested loops over the axes in the order they were
// given, the last axis varying fastest. For optimizer=sgd,adam and seed=0,1,2: sweep 0 is
// (sgd, 0), 1 (sgd, 1), 2 (sgd, 2), 3 (adam, 0), ... Precondition: index < gridSize().
GridPoint gridPoint(const std::vector<GridAxis>& grid, std::size_t index);
std::vector<GridPoint> gridPoints(const std::vector<GridAxis>& grid);

// How messages name a sweep: "sweep 3 (optimizer=sgd, momentum=0)"; "sweep 0" without axes.
std::string describeGridPoint(const GridPoint& point);

// A sweep's cost for sweepGroups(): optimizer steps x batch size x micro-batches, the
// samples it trains on (--num-training x --batch-size x --accumulate).
double sweepCost(int64_t num_training, int64_t batch_size, int64_t accumulate);

// The rule sweepGroups() follows, in words, for --help.
extern const char* const kSweepGroupRule;

// Assigns sweeps to `groups` rank groups, longest processing time first: the sweeps in
// order of decreasing cost (equal costs: the lower index first), each to the group with
// the least total cost so far (equal totals: the lower group). Returns the group
// (0..groups-1) of each sweep, indexed like `costs`. Needs groups >= 1 and costs >= 0.
std::vector<int> sweepGroups(const std::vector<double>& costs, int groups);

}  // namespace lrfind::runtime
