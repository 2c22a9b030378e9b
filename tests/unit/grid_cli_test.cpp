// --grid, --ranks-per-sweep and the [grid] table through the real command-line parser
// (launch/cli.cpp): the refusals as lrfind_dist prints them, a bad value named with its
// axis, and --write-config's [grid] table read back by --config to the same grid.

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "launch/cli.h"
#include "runtime/app.h"

namespace lrfind::launch {
namespace {

namespace fs = std::filesystem;

struct Parsed {
  CliOutcome outcome;
  runtime::RunConfig config;
};

Parsed parse(std::vector<std::string> args) {
  args.insert(args.begin(), "lrfind_dist");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  Parsed p;
  p.outcome = parseCommandLine(static_cast<int>(argv.size()), argv.data(), p.config);
  return p;
}

// The error line of a refused command line (exit 2, nothing on stdout).
std::string refusal(const std::vector<std::string>& args) {
  const Parsed p = parse(args);
  EXPECT_FALSE(p.outcome.run);
  EXPECT_EQ(p.outcome.exit_code, 2);
  EXPECT_EQ(p.outcome.out, "");
  return p.outcome.err;
}

class GridCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("lrfind_grid_cli_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string file(const std::string& name, const std::string& text) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path) << text;
    return path;
  }

  fs::path dir_;
};

const char* const kAxesList =
    "optimizer, momentum, nesterov, weight-decay, betas, eps, batch-size, accumulate, min-lr, max-lr, "
    "num-training, mode, beta, early-stop-threshold, seed, loss, precision";

using Axes = std::vector<runtime::GridAxis>;

TEST_F(GridCli, FlagsMakeTheGridInOrder) {
  const Parsed p = parse({"--grid", "optimizer=sgd,adam", "--grid=seed=0,1,2", "--ranks-per-sweep", "1"});
  ASSERT_EQ(p.outcome.err, "");
  EXPECT_TRUE(p.outcome.run);
  EXPECT_TRUE(p.config.grid == (Axes{{"optimizer", {"sgd", "adam"}}, {"seed", {"0", "1", "2"}}}));
  EXPECT_EQ(p.config.ranks_per_sweep, 1);
  // The shared flags keep their values: an axis does not set its flag.
  EXPECT_EQ(p.config.optimizer.name, "sgd");
  EXPECT_EQ(p.config.seed, 0u);
}

TEST_F(GridCli, NoGridByDefault) {
  const Parsed p = parse({});
  EXPECT_TRUE(p.outcome.run);
  EXPECT_TRUE(p.config.grid.empty());
  EXPECT_EQ(p.config.ranks_per_sweep, 0);
  EXPECT_EQ(p.config.config_text.find("grid"), std::string::npos);
  EXPECT_EQ(p.config.config_text.find("ranks-per-sweep"), std::string::npos);
}

TEST_F(GridCli, EveryAxisTakesAValidValue) {
  const std::vector<std::string> args = {
      "optimizer=sgd,adam",  "momentum=0,0.9",     "nesterov=true,false",    "weight-decay=auto,0.01",
      "betas=0.9",           "eps=auto,1e-6",      "batch-size=16,32",       "accumulate=1,2",
      "min-lr=1e-6,1e-5",    "max-lr=1,10",        "num-training=20,40",     "mode=exponential,linear",
      "beta=0,0.98",         "early-stop-threshold=none,4", "seed=0,1",    "loss=cross_entropy,nll"};
  for (const auto& arg : args) {
    SCOPED_TRACE(arg);
    if (arg == "betas=0.9") continue;  // a pair holds a comma: tested in the [grid] table
    const Parsed p = parse({"--grid", arg});
    EXPECT_EQ(p.outcome.err, "");
    EXPECT_TRUE(p.outcome.run);
    ASSERT_EQ(p.config.grid.size(), 1u);
  }
  // An axis replaces its flag, given on the command line too.
  const Parsed p = parse({"--optimizer", "adam", "--nesterov", "--grid", "optimizer=sgd,adamw", "--grid",
                          "nesterov=false,true"});
  EXPECT_EQ(p.outcome.err, "");
  EXPECT_TRUE(p.outcome.run);
}

TEST_F(GridCli, BadAxesAreOneLine) {
  EXPECT_EQ(refusal({"--grid", "optimiser=sgd,adam"}),
            "lrfind_dist: error: --grid optimiser=sgd,adam: unknown axis \"optimiser\" (no such flag); did you mean "
            "optimizer?\n");
  EXPECT_EQ(refusal({"--grid", "data=a.h5,b.h5"}),
            std::string("lrfind_dist: error: --grid data=a.h5,b.h5: --data cannot be a grid axis, it is shared by "
                        "every sweep; the axes are ") + kAxesList + "\n");
  EXPECT_EQ(refusal({"--grid", "comm-timeout=10"}),
            std::string("lrfind_dist: error: --grid comm-timeout=10: --comm-timeout cannot be a grid axis, it is "
                        "shared by every sweep; the axes are ") + kAxesList + "\n");
  EXPECT_EQ(refusal({"--grid", "seed="}),
            "lrfind_dist: error: --grid seed=: axis seed has no values; give at least one\n");
  EXPECT_EQ(refusal({"--grid", "seed=1,,2"}),
            "lrfind_dist: error: --grid seed=1,,2: axis seed has an empty value (value 2 of 3)\n");
  EXPECT_EQ(refusal({"--grid", "seed=1", "--grid", "seed=2"}),
            "lrfind_dist: error: --grid seed=2: axis seed is given twice; give each axis once, in --grid or in the "
            "[grid] table of --config\n");
  // One value per --grid: a second word is not swallowed.
  EXPECT_EQ(refusal({"--grid", "seed=1", "optimizer=adam"}).rfind("lrfind_dist: error: ", 0), 0u);
}

TEST_F(GridCli, BadValuesNameTheAxis) {
  EXPECT_EQ(refusal({"--grid", "batch-size=16,abc"}),
            "lrfind_dist: error: --grid batch-size=abc: Could not convert: --batch-size = abc (see --help)\n");
  EXPECT_EQ(refusal({"--grid", "mode=linear,cubic"}),
            "lrfind_dist: error: --grid mode=cubic: --mode: cubic not in {exponential,linear} (see --help)\n");
  EXPECT_EQ(refusal({"--grid", "early-stop-threshold=4,high"}),
            "lrfind_dist: error: --grid early-stop-threshold=high: --early-stop-threshold must be a number or "
            "\"none\", got \"high\"\n");
  EXPECT_EQ(refusal({"--grid", "betas=0.9,0.999"}),
            "lrfind_dist: error: --grid betas=0.9: --betas must be two numbers b1,b2, got \"0.9\"\n");
  EXPECT_EQ(refusal({"--grid", "nesterov=true,maybe"}),
            "lrfind_dist: error: --grid nesterov=maybe: Could not convert: --nesterov = maybe (see --help)\n");
}

TEST_F(GridCli, RanksPerSweep) {
  EXPECT_EQ(refusal({"--grid", "seed=0,1", "--ranks-per-sweep", "0"}),
            "lrfind_dist: error: --ranks-per-sweep must be >= 1, got 0\n");
  EXPECT_EQ(refusal({"--ranks-per-sweep", "2"}),
            "lrfind_dist: error: --ranks-per-sweep applies to a --grid (or a [grid] table in --config); without one "
            "the sweep runs on every rank\n");
  EXPECT_EQ(refusal({"--grid", "seed=0,1", "--ranks-per-sweep", "two"}),
            "lrfind_dist: error: Could not convert: --ranks-per-sweep = two (see --help)\n");
}

TEST_F(GridCli, TableAndFlagsMerge) {
  const std::string config = file("c.toml",
                                  "max-lr = 5\n"
                                  "[grid]\n"
                                  "optimizer = [\"sgd\", \"adam\"]\n"
                                  "seed = [0, 1, 2]\n"
                                  "betas = [\"0.9,0.999\", \"0.5,0.9\"]\n");
  const Parsed p = parse({"--config", config, "--grid", "batch-size=16,32"});
  ASSERT_EQ(p.outcome.err, "");
  EXPECT_TRUE(p.config.grid == (Axes{{"optimizer", {"sgd", "adam"}},
                                     {"seed", {"0", "1", "2"}},
                                     {"betas", {"0.9,0.999", "0.5,0.9"}},
                                     {"batch-size", {"16", "32"}}}));
  EXPECT_EQ(p.config.sweep.max_lr, 5.0);
}

TEST_F(GridCli, TableRefusals) {
  const std::string unknown = file("u.toml", "[grid]\ncolour = [\"red\"]\n");
  EXPECT_EQ(refusal({"--config", unknown}),
            "lrfind_dist: error: --config " + unknown + ": [grid] colour: unknown axis \"colour\" (no such flag); " +
                "the axes are " + kAxesList + "\n");
  const std::string shared = file("s.toml", "[grid]\nmodel = [\"mlp\", \"cnn\"]\n");
  EXPECT_EQ(refusal({"--config", shared}),
            "lrfind_dist: error: --config " + shared + ": [grid] model: --model cannot be a grid axis, it is shared " +
                "by every sweep; the axes are " + kAxesList + "\n");
  const std::string empty = file("e.toml", "[grid]\nseed = []\n");
  EXPECT_EQ(refusal({"--config", empty}),
            "lrfind_dist: error: --config " + empty + ": [grid] seed: axis seed has no values; give at least one\n");
  const std::string seeds = file("r.toml", "[grid]\nseed = [0, 1]\n");
  EXPECT_EQ(refusal({"--config", seeds, "--grid", "seed=2,3"}),
            "lrfind_dist: error: --grid seed=2,3: axis seed is given twice; give each axis once, in --grid or in the "
            "[grid] table of --config\n");
  const std::string bad_value = file("v.toml", "[grid]\nnum-training = [10, \"many\"]\n");
  EXPECT_EQ(refusal({"--config", bad_value}),
            "lrfind_dist: error: --grid num-training=many: Could not convert: --num-training = many (see --help)\n");
  // Every other table is refused as before; "grid" is a table, not a key.
  const std::string sweep = file("t.toml", "[sweep]\nmax-lr = 10\n");
  EXPECT_EQ(refusal({"--config", sweep}),
            "lrfind_dist: error: --config " + sweep +
                ": unknown table [sweep] (the file holds flag = value lines without tables, e.g. max-lr = 10)\n");
  const std::string nested = file("n.toml", "[grid.sub]\nseed = [1]\n");
  EXPECT_EQ(refusal({"--config", nested}),
            "lrfind_dist: error: --config " + nested +
                ": unknown table [grid.sub] (the file holds flag = value lines without tables, e.g. max-lr = 10)\n");
  const std::string key = file("k.toml", "grid = \"seed=1\"\n");
  EXPECT_EQ(refusal({"--config", key}),
            "lrfind_dist: error: --config " + key +
                ": \"grid\" is a table in a config file: [grid], then one line per axis, e.g. optimizer = [\"sgd\", "
                "\"adam\"]\n");
}

TEST_F(GridCli, WriteConfigRoundTrip) {
  const std::string config = file("c.toml",
                                  "[grid]\n"
                                  "optimizer = [\"sgd\", \"adam\"]\n"
                                  "betas = [\"0.9,0.999\", \"0.5,0.9\"]\n");
  const Parsed first = parse({"--config", config, "--grid", "nesterov=true,false", "--grid", "min-lr=1e-6, 0.5",
                              "--grid", "early-stop-threshold=none,4", "--momentum", "0.9", "--ranks-per-sweep", "1",
                              "--write-config"});
  ASSERT_EQ(first.outcome.err, "");
  EXPECT_FALSE(first.outcome.run);
  EXPECT_EQ(first.outcome.exit_code, 0);
  const std::string table =
      "[grid]\n"
      "optimizer = [\"sgd\", \"adam\"]\n"
      "betas = [\"0.9,0.999\", \"0.5,0.9\"]\n"
      "nesterov = [true, false]\n"
      "min-lr = [1e-6, 0.5]\n"
      "early-stop-threshold = [\"none\", 4]\n";
  const std::string& written = first.outcome.out;
  ASSERT_GE(written.size(), table.size());
  EXPECT_EQ(written.substr(written.size() - table.size()), table);
  EXPECT_NE(written.find("\nranks-per-sweep=1\n"), std::string::npos) << written;

  const std::string again = file("again.toml", written);
  const Parsed second = parse({"--config", again, "--write-config"});
  ASSERT_EQ(second.outcome.err, "");
  EXPECT_EQ(second.outcome.out, written);
  EXPECT_TRUE(second.config.grid == first.config.grid);
  EXPECT_EQ(second.config.ranks_per_sweep, 1);
  const Parsed run = parse({"--config", again});
  EXPECT_TRUE(run.outcome.run);
  EXPECT_TRUE(run.config.grid == first.config.grid);
}

TEST_F(GridCli, HelpExplainsTheGrid) {
  const Parsed p = parse({"--help"});
  EXPECT_EQ(p.outcome.exit_code, 0);
  for (const char* text : {"--grid", "--ranks-per-sweep", "the last axis varying fastest", "must divide the world size",
                           "longest first", "[grid] table"}) {
    EXPECT_NE(p.outcome.out.find(text), std::string::npos) << text;
  }
}

}  // namespace
}  // namespace lrfind::launch
