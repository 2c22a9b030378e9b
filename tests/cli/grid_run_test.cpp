// The tuning grid end to end (README "Tuning grid"): lrfind_dist --grid at np 1, 2 and 4
// with whole-world sweeps and with rank groups; each sweep against the same flags run
// alone, the summary against the sweeps, the seed band and the batch-size fit against
// values recomputed here from the stored curves, and a grid that loses a rank.

#include <cmath>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "cli/cli_util.h"
#include "runtime/results.h"

namespace lrfind {
namespace {

using namespace lrfind::testing;

// Short sweeps of the built-in MLP on the built-in synthetic data.
const char* const kCommon = "--num-training 30 --min-lr 1e-4 --max-lr 1 --plot '' ";

// numpy.quantile's default (linear) method.
double quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const double at = q * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(at));
  const std::size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (at - static_cast<double>(lo)) * (v[hi] - v[lo]);
}

// Equal, or both NaN (no suggestion).
bool sameNumber(double a, double b) { return a == b || (std::isnan(a) && std::isnan(b)); }

void expectSameCurve(const runtime::ResultsData& a, const runtime::ResultsData& b, bool bitwise,
                     const std::string& what) {
  ASSERT_EQ(a.loss_raw.size(), b.loss_raw.size()) << what;
  for (std::size_t k = 0; k < a.loss_raw.size(); ++k) {
    EXPECT_EQ(a.lr[k], b.lr[k]) << what << " step " << k;
    if (bitwise) {
      EXPECT_EQ(a.loss_raw[k], b.loss_raw[k]) << what << " step " << k;
    } else {
      EXPECT_LT(std::abs(a.loss_raw[k] - b.loss_raw[k]) / std::abs(b.loss_raw[k]), 1e-5) << what << " step " << k;
    }
  }
  ASSERT_EQ(a.suggestions.size(), b.suggestions.size()) << what;
  for (const auto& [name, value] : a.suggestions) {
    EXPECT_TRUE(sameNumber(value, b.suggestions.at(name))) << what << " " << name;
  }
  EXPECT_EQ(a.strings.at("stop_reason"), b.strings.at("stop_reason")) << what;
  // What the run records besides the curve, also for sweeps that another rank group ran
  // (sent to rank 0 in its start message).
  for (const char* key : {"model", "data", "optimizer", "loss_fn", "input_type", "normalize", "labels", "stop_rule"}) {
    EXPECT_EQ(a.strings.at(key), b.strings.at(key)) << what << " " << key;
  }
  for (const char* key : {"input_scale", "channels_last", "batch_size", "global_batch_size", "seed", "world_size"}) {
    EXPECT_EQ(a.numbers.at(key), b.numbers.at(key)) << what << " " << key;
  }
}

// Every grid point once, in grid order, and /summary row i says what /sweeps/i says.
void expectSummaryMatchesSweeps(const runtime::GridResultsData& g, std::size_t sweeps, int groups) {
  ASSERT_EQ(g.sweeps.size(), sweeps);
  const auto& index = g.summary_numbers.at("index");
  ASSERT_EQ(index.size(), sweeps);
  std::vector<int> per_group(static_cast<std::size_t>(groups), 0);
  for (std::size_t i = 0; i < sweeps; ++i) {
    EXPECT_EQ(index[i], static_cast<double>(i));
    const auto& s = g.sweeps.at(i);
    EXPECT_EQ(s.numbers.at("complete"), 1) << "sweep " << i;
    EXPECT_EQ(g.summary_numbers.at("steps_completed")[i], s.numbers.at("steps_completed")) << i;
    EXPECT_EQ(g.summary_strings.at("stop_reason")[i], s.strings.at("stop_reason")) << i;
    EXPECT_TRUE(sameNumber(g.summary_numbers.at("suggested_lr")[i], s.numbers.at("suggested_lr"))) << i;
    EXPECT_TRUE(sameNumber(g.summary_numbers.at("steepest_lr")[i], s.suggestions.at("steepest_lr"))) << i;
    const double group = g.summary_numbers.at("group")[i];
    EXPECT_EQ(group, s.numbers.at("group")) << i;
    ASSERT_GE(group, 0);
    ASSERT_LT(group, groups);
    ++per_group[static_cast<std::size_t>(group)];
    EXPECT_LE(s.numbers.at("started_at"), s.numbers.at("ended_at")) << i;
    for (const auto& axis : g.axes) {
      EXPECT_EQ(g.summary_strings.at(axis)[i], s.strings.at("grid_" + axis)) << "sweep " << i << " axis " << axis;
    }
  }
  for (int n : per_group) EXPECT_GT(n, 0) << "every rank group ran a sweep";
  EXPECT_EQ(g.numbers.at("complete"), 1);
  EXPECT_EQ(g.strings.at("stop_reason"), "completed");
}

// The 2x2 grid of the issue: each sweep equals the same flags run alone, bit for bit
// with the same number of ranks per sweep.
TEST(GridCli, EachSweepEqualsTheSameFlagsRunAlone) {
  TempDir dir;
  const std::vector<std::string> optimizers = {"sgd", "adam"}, batches = {"16", "32"};
  std::map<std::pair<int, std::size_t>, runtime::ResultsData> alone;  // (ranks, sweep)
  for (int np : {1, 2}) {
    std::size_t i = 0;
    for (const auto& opt : optimizers) {
      for (const auto& b : batches) {
        const std::string out = "alone_np" + std::to_string(np) + "_" + std::to_string(i) + ".h5";
        const auto r = runCli(dir, std::string(kCommon) + "--optimizer " + opt + " --batch-size " + b + " --out " + out,
                              np == 1 ? "" : mpirun(np));
        ASSERT_EQ(r.code, 0) << r.err;
        alone[{np, i}] = runtime::readResults(dir.file(out));
        ++i;
      }
    }
  }
  struct Case {
    int np;
    int ranks_per_sweep;  // 0: the default, the whole world
  };
  for (const Case& c : {Case{1, 0}, Case{2, 1}, Case{2, 2}, Case{4, 2}}) {
    const int per_sweep = c.ranks_per_sweep > 0 ? c.ranks_per_sweep : c.np;
    const std::string name = "grid_np" + std::to_string(c.np) + "_r" + std::to_string(per_sweep);
    std::string args = std::string(kCommon) + "--grid optimizer=sgd,adam --grid batch-size=16,32 --out " + name +
                       ".h5 --json " + name + ".json";
    if (c.ranks_per_sweep > 0) args += " --ranks-per-sweep " + std::to_string(c.ranks_per_sweep);
    const auto r = runCli(dir, args, c.np == 1 ? "" : mpirun(c.np));
    ASSERT_EQ(r.code, 0) << name << "\n" << r.err;
    const auto g = runtime::readGridResults(dir.file(name + ".h5"));
    EXPECT_EQ(g.axes, (std::vector<std::string>{"optimizer", "batch-size"}));
    expectSummaryMatchesSweeps(g, 4, c.np / per_sweep);
    for (std::size_t i = 0; i < 4; ++i) {
      const auto& s = g.sweeps.at(i);
      EXPECT_EQ(s.strings.at("grid_optimizer"), optimizers[i / 2]);
      EXPECT_EQ(s.strings.at("grid_batch-size"), batches[i % 2]);
      EXPECT_EQ(s.numbers.at("world_size"), per_sweep);
      expectSameCurve(s, alone.at({per_sweep, i}), true, name + " sweep " + std::to_string(i));
    }
    // The console table has a row per sweep; the JSON lists every sweep.
    for (const auto& opt : optimizers) EXPECT_NE(r.out.find(opt), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("results: " + name + ".h5"), std::string::npos) << r.out;
    const std::string json = slurp(dir.file(name + ".json"));
    EXPECT_NE(json.find("\"sweeps\""), std::string::npos);
  }
}

TEST(GridCli, SeedBandAndMedianMatchTheFourStoredCurves) {
  TempDir dir;
  const auto r = runCli(dir, "--num-training 30 --min-lr 1e-4 --max-lr 1 --grid seed=0,1,2,3 --ranks-per-sweep 1 "
                        "--plot band.svg", mpirun(2));
  ASSERT_EQ(r.code, 0) << r.err;
  const auto g = runtime::readGridResults(dir.file("lrfind.h5"));
  expectSummaryMatchesSweeps(g, 4, 2);
  ASSERT_EQ(g.seed_groups.size(), 1u);
  const auto& sg = g.seed_groups[0];
  std::vector<double> logs;
  for (std::size_t i = 0; i < 4; ++i) {
    const double lr = g.sweeps.at(i).numbers.at("suggested_lr");
    if (std::isfinite(lr)) logs.push_back(std::log10(lr));
  }
  ASSERT_FALSE(logs.empty());
  EXPECT_EQ(sg.numbers.at("found"), static_cast<double>(logs.size()));
  EXPECT_NEAR(std::log10(sg.numbers.at("median_lr")), quantile(logs, 0.5), 1e-12);
  EXPECT_NEAR(sg.numbers.at("log10_lr_min"), *std::min_element(logs.begin(), logs.end()), 1e-12);
  EXPECT_NEAR(sg.numbers.at("log10_lr_max"), *std::max_element(logs.begin(), logs.end()), 1e-12);
  EXPECT_NEAR(sg.numbers.at("log10_lr_iqr"), quantile(logs, 0.75) - quantile(logs, 0.25), 1e-12);
  const auto& band_lr = sg.series.at("lr");
  ASSERT_GT(band_lr.size(), 0u);
  for (std::size_t k = 0; k < band_lr.size(); ++k) {
    std::vector<double> at;
    for (std::size_t i = 0; i < 4; ++i) {
      const auto& loss = g.sweeps.at(i).loss;
      if (k < loss.size() && std::isfinite(loss[k])) at.push_back(loss[k]);
    }
    ASSERT_FALSE(at.empty()) << k;
    EXPECT_EQ(band_lr[k], g.sweeps.at(0).lr[k]) << k;
    EXPECT_EQ(sg.series.at("loss_min")[k], *std::min_element(at.begin(), at.end())) << k;
    EXPECT_EQ(sg.series.at("loss_max")[k], *std::max_element(at.begin(), at.end())) << k;
    EXPECT_NEAR(sg.series.at("loss_median")[k], quantile(at, 0.5), 1e-12) << k;
  }
  const std::string svg = slurp(dir.file("band.svg"));
  EXPECT_NE(svg.find("class=\"band\""), std::string::npos);
}

TEST(GridCli, BatchSizeAlphaIsTheFitOfTheStoredSuggestions) {
  TempDir dir;
  const auto r = runCli(dir, std::string(kCommon) + "--grid batch-size=16,32,64,128");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto g = runtime::readGridResults(dir.file("lrfind.h5"));
  expectSummaryMatchesSweeps(g, 4, 1);
  ASSERT_EQ(g.batch_scaling.size(), 1u);
  std::vector<double> x, y;
  for (std::size_t i = 0; i < 4; ++i) {
    const double lr = g.summary_numbers.at("suggested_lr")[i];
    if (!std::isfinite(lr)) continue;
    x.push_back(std::log10(g.summary_numbers.at("global_batch_size")[i]));
    y.push_back(std::log10(lr));
  }
  ASSERT_GE(x.size(), 2u);
  const double n = static_cast<double>(x.size());
  double mx = 0, my = 0;
  for (std::size_t i = 0; i < x.size(); ++i) mx += x[i] / n, my += y[i] / n;
  double sxy = 0, sxx = 0;
  for (std::size_t i = 0; i < x.size(); ++i) sxy += (x[i] - mx) * (y[i] - my), sxx += (x[i] - mx) * (x[i] - mx);
  const double alpha = sxy / sxx;
  double rss = 0;
  for (std::size_t i = 0; i < x.size(); ++i) rss += std::pow(y[i] - (my + alpha * (x[i] - mx)), 2);
  const auto& fit = g.batch_scaling[0];
  EXPECT_NEAR(fit.numbers.at("alpha"), alpha, 1e-9);
  EXPECT_NEAR(fit.numbers.at("residual"), std::sqrt(rss / n), 1e-9);
  EXPECT_NE(r.out.find("B^"), std::string::npos) << "the fit is printed:\n" << r.out;
}

// A sweep that diverges at once (it starts at lr 1e4) is a result: the grid goes on, the
// other sweeps run their course, and the job succeeds.
TEST(GridCli, OneSweepDivergingAtOnceIsAResult) {
  TempDir dir;
  const auto r = runCli(dir, "--num-training 30 --max-lr 1e6 --plot '' --grid min-lr=1e-4,1e4,1e-3");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto g = runtime::readGridResults(dir.file("lrfind.h5"));
  expectSummaryMatchesSweeps(g, 3, 1);
  for (std::size_t i : {0, 2}) {
    EXPECT_GT(g.summary_numbers.at("steps_completed")[i], 10) << i;
    EXPECT_FALSE(std::isnan(g.summary_numbers.at("suggested_lr")[i])) << i;
  }
  const std::string wild = g.summary_strings.at("stop_reason")[1];
  EXPECT_TRUE(wild == "diverged" || wild == "nonfinite") << wild;
  EXPECT_LE(g.summary_numbers.at("steps_completed")[1], 3);
  EXPECT_TRUE(std::isnan(g.summary_numbers.at("suggested_lr")[1]));
  EXPECT_NE(r.out.find(wild), std::string::npos) << "the table says which sweep stopped how:\n" << r.out;
}

// A rank group that fails stops the grid: the other group stops after its current step,
// rank 0 reports the failure once, and the file keeps every sweep so far.
TEST(GridCli, FailureInOneRankGroupEndsTheGridWithOneMessage) {
  TempDir dir;
  ::setenv("LRFIND_FAULT_INJECT", "1:40", 1);  // rank 1's 2nd sweep, at its step 10
  const auto r = runCli(dir, std::string(kCommon) + "--grid seed=0,1,2,3 --ranks-per-sweep 1", mpirun(2));
  ::unsetenv("LRFIND_FAULT_INJECT");
  EXPECT_EQ(r.code, 1) << r.err;
  const std::string line = "lrfind_dist: error: sweep 3 (seed=3) on rank group 1: rank 0, step 10: fault injected";
  EXPECT_NE(r.err.find(line), std::string::npos) << r.err;
  EXPECT_EQ(linesStartingWith(r.err, "lrfind_dist: error").size(), 1u) << r.err;
  const auto g = runtime::readGridResults(dir.file("lrfind.h5.partial"));
  EXPECT_EQ(g.numbers.at("complete"), 0);
  EXPECT_EQ(g.strings.at("stop_reason"), "error");
  EXPECT_EQ(g.sweeps.at(1).numbers.at("complete"), 1);
  EXPECT_EQ(g.sweeps.at(3).strings.at("stop_reason"), "error");
}

// The 4-seed grid at np 2, one rank per sweep, with LRFIND_FAULT_INJECT=`fault`, run in
// the background to its end (at most 30 s): how it ended. The full path in the flags is
// how processesMentioning() finds the ranks.
JobEnd runFaultyGrid(const TempDir& dir, const std::string& fault, const std::string& flags) {
  ::setenv("LRFIND_FAULT_INJECT", fault.c_str(), 1);
  Job job(dir,
          std::string(kCommon) + "--grid seed=0,1,2,3 --ranks-per-sweep 1 " + flags + " --out '" +
              dir.file("lrfind.h5") + "'",
          mpirunBare(2));
  ::unsetenv("LRFIND_FAULT_INJECT");
  EXPECT_TRUE(waitForSize(dir.file("lrfind.h5.partial"), 0)) << slurp(dir.file("stderr.txt"));
  const auto ranks = processesMentioning(dir.path().string());
  EXPECT_GE(ranks.size(), 2u) << "both ranks run";
  return waitForJobEnd(job, dir.path().string(), ranks, 30.0 * timeScale());
}

// kill -9 of a rank in its second sweep: the launcher ends the job, no process is left,
// and <out>.partial opens with the sweeps that had finished.
TEST(GridCli, RankKilledMidGridLeavesTheFinishedSweeps) {
  TempDir dir;
  const JobEnd end = runFaultyGrid(dir, "1:55:kill", "");  // rank 1's 2nd sweep, at its step 25
  ASSERT_TRUE(end.code.has_value()) << "the launcher is still running 30 s after the kill";
  EXPECT_NE(*end.code, 0);
  EXPECT_TRUE(end.all_gone) << "a rank outlived the job";
  const auto g = runtime::readGridResults(dir.file("lrfind.h5.partial"));
  EXPECT_EQ(g.numbers.at("complete"), 0);
  // Sweeps 0 (rank 0) and 1 (rank 1) ended 25 steps before the kill.
  for (std::size_t i : {0, 1}) {
    ASSERT_EQ(g.sweeps.count(i), 1u) << i;
    EXPECT_EQ(g.sweeps.at(i).numbers.at("complete"), 1) << i;
    EXPECT_EQ(g.sweeps.at(i).lr.size(), 30u) << i;
  }
}

// A rank that stalls (SIGSTOP) holds its rank group: world rank 0 hears nothing from
// the group for --comm-timeout, names its leader and ends the job with exit 3; the
// finished sweeps stay in <out>.partial.
TEST(GridCli, StalledRankGroupEndsTheJobWithinTheTimeout) {
  TempDir dir;
  const JobEnd end = runFaultyGrid(dir, "1:40:stall", "--comm-timeout 3");  // rank 1's 2nd sweep, step 10
  ASSERT_TRUE(end.code.has_value()) << "the job is still running; stderr: " << slurp(dir.file("stderr.txt"));
  EXPECT_EQ(*end.code, 3) << slurp(dir.file("stderr.txt"));
  EXPECT_TRUE(end.all_gone) << "a rank outlived the job";
  const std::string err = slurp(dir.file("stderr.txt"));
  const auto errors = linesStartingWith(err, "lrfind_dist: error: ");
  ASSERT_EQ(errors.size(), 1u) << err;
  EXPECT_NE(errors[0].find("rank group 1 (leader rank 1 ("), std::string::npos) << errors[0];
  EXPECT_NE(errors[0].find("did not answer within 3 s (--comm-timeout)"), std::string::npos) << errors[0];
  const auto g = runtime::readGridResults(dir.file("lrfind.h5.partial"));
  EXPECT_EQ(g.numbers.at("complete"), 0);
  EXPECT_EQ(g.sweeps.at(1).numbers.at("complete"), 1);
}

// SIGTERM (Slurm's notice) stops the running sweep after its step; the grid runs no more
// sweeps, exits 128 + 15, and keeps what it did.
TEST(GridCli, SigtermStopsTheGridAndKeepsItsSweeps) {
  TempDir dir;
  Job job(dir, "--num-training 500000 --early-stop-threshold none --max-lr 1e-3 --plot '' --grid seed=0,1 --out '" +
                   dir.file("lrfind.h5") + "'");
  ASSERT_TRUE(waitForSize(dir.file("lrfind.h5.partial"), 40000)) << slurp(dir.file("stderr.txt"));
  ASSERT_EQ(::kill(job.pid(), SIGTERM), 0);
  const auto code = job.wait(10.0 * timeScale());
  ASSERT_TRUE(code.has_value()) << "still running 10 s after SIGTERM";
  EXPECT_EQ(*code, 128 + SIGTERM);
  EXPECT_NE(slurp(dir.file("stderr.txt")).find("lrfind_dist: interrupted"), std::string::npos);
  const auto g = runtime::readGridResults(dir.file("lrfind.h5.partial"));
  EXPECT_EQ(g.strings.at("stop_reason"), "interrupted");
  EXPECT_EQ(g.numbers.at("complete"), 0);
  ASSERT_EQ(g.sweeps.size(), 1u) << "sweep 1 never started";
  EXPECT_EQ(g.sweeps.at(0).strings.at("stop_reason"), "interrupted");
  EXPECT_GT(g.sweeps.at(0).lr.size(), 0u);
}

// --write-config writes the grid as a [grid] table, and --config of it runs the same
// sweeps, bit for bit.
TEST(GridCli, WrittenConfigRepeatsTheGridBitForBit) {
  TempDir dir;
  const std::string grid = "--num-training 20 --plot '' --grid optimizer=sgd,adamw --grid weight-decay=0,0.1 ";
  ASSERT_EQ(runCli(dir, grid + "--out flags.h5").code, 0);
  const auto written = runCli(dir, grid + "--write-config");
  ASSERT_EQ(written.code, 0) << written.err;
  EXPECT_NE(written.out.find("[grid]"), std::string::npos) << written.out;
  std::ofstream(dir.file("run.toml")) << written.out;
  const auto r = runCli(dir, "--config run.toml --out config.h5");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto a = runtime::readGridResults(dir.file("flags.h5"));
  const auto b = runtime::readGridResults(dir.file("config.h5"));
  EXPECT_EQ(a.axes, b.axes);
  // The same configuration but for --out.
  const std::string flags_config = a.strings.at("config"), file_config = b.strings.at("config");
  EXPECT_EQ(file_config.substr(file_config.find("[grid]")), flags_config.substr(flags_config.find("[grid]")));
  ASSERT_EQ(a.sweeps.size(), 4u);
  ASSERT_EQ(b.sweeps.size(), 4u);
  for (std::size_t i = 0; i < 4; ++i) {
    expectSameCurve(b.sweeps.at(i), a.sweeps.at(i), true, "sweep " + std::to_string(i));
    EXPECT_EQ(b.sweeps.at(i).strings.at("grid_weight-decay"), a.sweeps.at(i).strings.at("grid_weight-decay"));
  }
}

}  // namespace
}  // namespace lrfind
