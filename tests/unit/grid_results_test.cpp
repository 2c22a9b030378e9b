// The tuning grid's results file (GridResultsWriter): sweeps under /sweeps/<i> written
// as they interleave, the summary, and what a cut-short grid leaves behind.
#include "runtime/results.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <utility>

#include <gtest/gtest.h>

#include "common/error.h"
#include "finder/suggest.h"
#include "test_util.h"
#include "unit/run_fixture.h"

namespace lrfind::runtime {
namespace {

using lrfind::testing::TempDir;
namespace fs = std::filesystem;

const std::vector<GridAxis> kAxes = {{"batch-size", {"16", "32"}}, {"seed", {"0"}}};

GridFileInfo fileInfo(std::vector<GridAxis> axes = kAxes) {
  GridFileInfo info;
  info.axes = std::move(axes);
  info.world_size = 3;
  info.ranks_per_sweep = 1;
  info.groups = 2;
  info.config = "model = \"mlp\"\n[grid]\nbatch-size = [16, 32]\n";
  return info;
}

// Sweep `index` of kAxes, run by group `group` on `world` ranks.
GridSweep makeSweep(std::size_t index, int group, int world) {
  GridSweep s;
  s.index = index;
  s.values = {{"batch-size", index == 0 ? "16" : "32"}, {"seed", "0"}};
  s.group = group;
  s.started_at = 1.7e9 + static_cast<double>(index);
  s.info = testing::sampleRunInfo();
  s.info.batch_size = index == 0 ? 16 : 32;
  s.info.global_batch_size = s.info.batch_size * world;
  s.info.world_size = world;
  s.options = testing::sampleOptions();
  s.result.world_size = world;
  return s;
}

// Step k of sweep s: values that tell the sweeps and the ranks apart.
void addStep(GridResultsWriter& w, GridSweep& s, int64_t k) {
  finder::StepRecord rec;
  rec.step = k;
  const auto& o = s.options;
  rec.lr = o.min_lr * std::pow(o.max_lr / o.min_lr, double(k) / (o.num_training - 1));
  rec.loss_raw = 2.0 + static_cast<double>(s.index) - 0.1 * static_cast<double>(k);
  rec.loss = rec.loss_raw * 0.9;
  for (int r = 0; r < s.result.world_size; ++r) rec.loss_per_rank.push_back(rec.loss_raw + 0.01 * r);
  rec.seconds = 0.01 * static_cast<double>(k + 1);
  w.step(s.index, rec);
  s.result.lr.push_back(rec.lr);
  s.result.loss.push_back(rec.loss);
  s.result.loss_raw.push_back(rec.loss_raw);
  s.result.loss_per_rank.push_back(rec.loss_per_rank);
  s.result.step_seconds.push_back(rec.seconds);
}

// Sweeps 0 (group 0, two ranks) and 1 (group 1, one rank), started in that order.
std::pair<GridSweep, GridSweep> startTwoSweeps(GridResultsWriter& w) {
  std::pair<GridSweep, GridSweep> sweeps(makeSweep(0, 0, 2), makeSweep(1, 1, 1));
  w.startSweep(sweeps.first);
  w.startSweep(sweeps.second);
  return sweeps;
}

// Steps 0 to steps-1 of two sweeps, interleaved: step k of `first`, then of `second`.
void interleaveSteps(GridResultsWriter& w, GridSweep& first, GridSweep& second, int64_t steps) {
  for (int64_t k = 0; k < steps; ++k) {
    addStep(w, first, k);
    addStep(w, second, k);
  }
}

void endSweep(GridResultsWriter& w, GridSweep& s, finder::StopReason reason) {
  s.result.stop_reason = reason;
  s.result.suggestions =
      finder::suggestAll({s.result.lr, s.result.loss, s.options.mode, s.options.skip_begin, s.options.skip_end});
  s.ended_at = s.started_at + 10;
  w.endSweep(s);
}

double lrOf(const finder::SweepResult& r, finder::SuggestMethod m) {
  for (const auto& s : r.suggestions) {
    if (s.method == m && s.found) return s.lr;
  }
  return std::numeric_limits<double>::quiet_NaN();
}

// Equal, NaN equal to NaN.
void expectSame(const std::vector<double>& got, const std::vector<double>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (std::size_t i = 0; i < want.size(); ++i) {
    if (std::isnan(want[i])) {
      EXPECT_TRUE(std::isnan(got[i])) << what << "[" << i << "] = " << got[i];
    } else {
      EXPECT_EQ(got[i], want[i]) << what << "[" << i << "]";
    }
  }
}

GridSummary sampleSummary() {
  GridSummary summary;
  SeedGroup sg;
  sg.label = "batch-size=16";
  sg.sweeps = {0};
  sg.found = 1;
  sg.median_lr = 1e-2;
  sg.log10_min = sg.log10_max = -2;
  sg.log10_iqr = 0;
  sg.lr = {1e-4, 1e-3};
  sg.loss_min = {2.0, 1.5};
  sg.loss_max = {2.2, 1.7};
  sg.loss_median = {2.1, 1.6};
  summary.seed_groups.push_back(sg);
  BatchFit fit;
  fit.label = "seed=0";
  fit.sweeps = {0, 1};
  fit.batch = {32, 32};
  fit.lr = {1e-2, 2e-2};
  fit.alpha = fit.intercept = fit.residual = std::numeric_limits<double>::quiet_NaN();  // one batch size
  summary.batch_fits.push_back(fit);
  return summary;
}

TEST(GridResults, InterleavedSweepsRoundTrip) {
  TempDir dir;
  const auto out = dir.file("grid.h5");
  GridResultsWriter w(out, fileInfo());
  EXPECT_EQ(w.currentPath(), partialPath(out));
  auto [a, b] = startTwoSweeps(w);
  interleaveSteps(w, a, b, 3);
  addStep(w, a, 3);
  endSweep(w, b, finder::StopReason::kCompleted);
  addStep(w, a, 4);
  endSweep(w, a, finder::StopReason::kDiverged);
  EXPECT_FALSE(fs::exists(out)) << "nothing at the path before finish()";
  const GridSummary summary = sampleSummary();
  w.finish({b, a}, summary, finder::StopReason::kCompleted, "");  // any order: the summary is in grid order
  EXPECT_EQ(w.currentPath(), out);
  EXPECT_TRUE(fs::exists(out));
  EXPECT_FALSE(fs::exists(partialPath(out)));

  const GridResultsData d = readGridResults(out);
  EXPECT_EQ(d.axes, (std::vector<std::string>{"batch-size", "seed"}));
  EXPECT_EQ(d.strings.count("grid_axes"), 0u);
  EXPECT_EQ(d.numbers.at("num_sweeps"), 2);
  EXPECT_EQ(d.numbers.at("world_size"), 3);
  EXPECT_EQ(d.numbers.at("ranks_per_sweep"), 1);
  EXPECT_EQ(d.numbers.at("groups"), 2);
  EXPECT_EQ(d.numbers.at("complete"), 1);
  EXPECT_EQ(d.strings.at("stop_reason"), "completed");
  EXPECT_EQ(d.strings.at("config"), fileInfo().config);
  EXPECT_FALSE(d.strings.at("lrfind_version").empty());
  EXPECT_EQ(d.strings.count("error"), 0u);

  ASSERT_EQ(d.sweeps.size(), 2u);
  for (const GridSweep* s : {&a, &b}) {
    const ResultsData& r = d.sweeps.at(s->index);
    const std::string i = std::to_string(s->index);
    EXPECT_EQ(r.lr, s->result.lr) << i;
    EXPECT_EQ(r.loss, s->result.loss) << i;
    EXPECT_EQ(r.loss_raw, s->result.loss_raw) << i;
    EXPECT_EQ(r.step_seconds, s->result.step_seconds) << i;
    EXPECT_EQ(r.loss_per_rank, s->result.loss_per_rank) << i;
    EXPECT_EQ(r.numbers.at("steps_completed"), s->result.stepsCompleted()) << i;
    EXPECT_EQ(r.numbers.at("world_size"), s->result.world_size) << i;
    EXPECT_EQ(r.numbers.at("batch_size"), s->info.batch_size) << i;
    EXPECT_EQ(r.numbers.at("global_batch_size"), s->info.global_batch_size) << i;
    EXPECT_EQ(r.numbers.at("num_training"), 30) << i;
    EXPECT_EQ(r.numbers.at("group"), s->group) << i;
    EXPECT_EQ(r.numbers.at("started_at"), s->started_at) << i;
    EXPECT_EQ(r.numbers.at("ended_at"), s->ended_at) << i;
    EXPECT_EQ(r.numbers.at("complete"), 1) << i;
    EXPECT_EQ(r.strings.at("stop_reason"), finder::toString(s->result.stop_reason)) << i;
    EXPECT_EQ(r.strings.at("grid_batch-size"), s->values[0].second) << i;
    EXPECT_EQ(r.strings.at("grid_seed"), "0") << i;
    EXPECT_EQ(r.strings.at("optimizer"), "sgd") << i;
    EXPECT_FALSE(r.strings.at("lrfind_version").empty()) << i;
    expectSame({r.numbers.at("suggested_lr")}, {lrOf(s->result, s->result.method)}, "suggested_lr " + i);
    for (const auto& sug : s->result.suggestions) {
      const std::string m = finder::toString(sug.method);
      EXPECT_EQ(r.suggestions.at(m + "_index"), sug.found ? sug.index : -1) << m << " " << i;
    }
  }
  EXPECT_EQ(d.sweeps.at(0).loss_per_rank[0].size(), 2u);
  EXPECT_EQ(d.sweeps.at(1).loss_per_rank[0].size(), 1u);
  // One sweep of a grid reads like a single-sweep file.
  EXPECT_EQ(readResults(out, "/sweeps/1").lr, b.result.lr);

  const auto& n = d.summary_numbers;
  const auto& s = d.summary_strings;
  EXPECT_EQ(n.at("index"), (std::vector<double>{0, 1}));
  EXPECT_EQ(s.at("batch-size"), (std::vector<std::string>{"16", "32"}));
  EXPECT_EQ(s.at("seed"), (std::vector<std::string>{"0", "0"}));
  EXPECT_EQ(s.at("stop_reason"), (std::vector<std::string>{"diverged", "completed"}));
  EXPECT_EQ(n.at("steps_completed"), (std::vector<double>{5, 3}));
  EXPECT_EQ(n.at("group"), (std::vector<double>{0, 1}));
  EXPECT_EQ(n.at("global_batch_size"), (std::vector<double>{32, 32}));
  EXPECT_EQ(n.at("started_at"), (std::vector<double>{a.started_at, b.started_at}));
  EXPECT_EQ(n.at("ended_at"), (std::vector<double>{a.ended_at, b.ended_at}));
  expectSame(n.at("suggested_lr"), {lrOf(a.result, a.result.method), lrOf(b.result, b.result.method)},
             "suggested_lr");
  for (const auto m : finder::allSuggestMethods()) {
    const std::string name = std::string(finder::toString(m)) + "_lr";
    expectSame(n.at(name), {lrOf(a.result, m), lrOf(b.result, m)}, name);
  }
  EXPECT_TRUE(std::isnan(n.at("slide_lr")[0])) << "slide needs 16 points: NaN when not found";
  EXPECT_EQ(n.size() + s.size(), 8 + finder::allSuggestMethods().size() + kAxes.size());

  ASSERT_EQ(d.seed_groups.size(), 1u);
  const auto& sg = d.seed_groups[0];
  const SeedGroup& want = summary.seed_groups[0];
  EXPECT_EQ(sg.strings.at("label"), want.label);
  EXPECT_EQ(sg.numbers.at("median_lr"), want.median_lr);
  EXPECT_EQ(sg.numbers.at("log10_lr_min"), want.log10_min);
  EXPECT_EQ(sg.numbers.at("log10_lr_max"), want.log10_max);
  EXPECT_EQ(sg.numbers.at("log10_lr_iqr"), want.log10_iqr);
  EXPECT_EQ(sg.numbers.at("found"), 1);
  EXPECT_EQ(sg.series.at("sweeps"), (std::vector<double>{0}));
  EXPECT_EQ(sg.series.at("lr"), want.lr);
  EXPECT_EQ(sg.series.at("loss_min"), want.loss_min);
  EXPECT_EQ(sg.series.at("loss_max"), want.loss_max);
  EXPECT_EQ(sg.series.at("loss_median"), want.loss_median);

  ASSERT_EQ(d.batch_scaling.size(), 1u);
  const auto& fit = d.batch_scaling[0];
  EXPECT_EQ(fit.strings.at("label"), "seed=0");
  EXPECT_TRUE(std::isnan(fit.numbers.at("alpha")));
  EXPECT_TRUE(std::isnan(fit.numbers.at("intercept")));
  EXPECT_TRUE(std::isnan(fit.numbers.at("residual")));
  EXPECT_EQ(fit.series.at("sweeps"), (std::vector<double>{0, 1}));
  EXPECT_EQ(fit.series.at("batch"), (std::vector<double>{32, 32}));
  EXPECT_EQ(fit.series.at("lr"), (std::vector<double>{1e-2, 2e-2}));
}

TEST(GridResults, ErrorEndStaysPartial) {
  TempDir dir;
  const auto out = dir.file("grid.h5");
  GridResultsWriter w(out, fileInfo());
  GridSweep a = makeSweep(0, 0, 1);
  w.startSweep(a);
  addStep(w, a, 0);
  endSweep(w, a, finder::StopReason::kError);
  w.finish({a}, GridSummary{}, finder::StopReason::kError, "group 1: rank 2 out of memory");
  EXPECT_EQ(w.currentPath(), partialPath(out));
  EXPECT_FALSE(fs::exists(out));
  const GridResultsData d = readGridResults(partialPath(out));
  EXPECT_EQ(d.numbers.at("complete"), 0);
  EXPECT_EQ(d.strings.at("stop_reason"), "error");
  EXPECT_EQ(d.strings.at("error"), "group 1: rank 2 out of memory");
  EXPECT_EQ(d.sweeps.at(0).numbers.at("complete"), 0);
  EXPECT_EQ(d.summary_numbers.at("index"), (std::vector<double>{0}));
  EXPECT_TRUE(d.seed_groups.empty());
  EXPECT_TRUE(d.batch_scaling.empty());
}

// What a killed job leaves: every flushed step of every sweep, each sweep's own end.
TEST(GridResults, CutShortLeavesReadablePartial) {
  TempDir dir;
  const auto out = dir.file("grid.h5");
  auto check = [&](const std::string& when) {
    const GridResultsData d = readGridResults(partialPath(out));
    EXPECT_EQ(d.numbers.at("complete"), 0) << when;
    EXPECT_EQ(d.strings.at("stop_reason"), "running") << when;
    EXPECT_EQ(d.axes.size(), 2u) << when;
    ASSERT_EQ(d.sweeps.size(), 2u) << when;
    const ResultsData& ended = d.sweeps.at(0);
    EXPECT_EQ(ended.numbers.at("complete"), 1) << when;
    EXPECT_EQ(ended.strings.at("stop_reason"), "completed") << when;
    EXPECT_EQ(ended.lr.size(), 3u) << when;
    const ResultsData& running = d.sweeps.at(1);
    EXPECT_EQ(running.numbers.at("complete"), 0) << when;
    EXPECT_EQ(running.strings.at("stop_reason"), "running") << when;
    EXPECT_EQ(running.numbers.at("steps_completed"), 4) << when;
    EXPECT_EQ(running.lr.size(), 4u) << when;
    EXPECT_EQ(running.loss_per_rank.size(), 4u) << when;
    EXPECT_TRUE(std::isnan(running.numbers.at("suggested_lr"))) << when;
    EXPECT_EQ(running.numbers.count("ended_at"), 0u) << when;
    EXPECT_TRUE(d.summary_numbers.empty()) << when;
  };
  {
    GridResultsWriter w(out, fileInfo());
    auto [a, b] = startTwoSweeps(w);
    interleaveSteps(w, b, a, 3);
    endSweep(w, a, finder::StopReason::kCompleted);
    addStep(w, b, 3);
    check("while the writer holds the file");  // kill -9 now
  }
  check("after the writer went away without finish()");
  EXPECT_FALSE(fs::exists(out));
}

// Zero-row columns and a grid of no axes (one sweep of the shared flags).
TEST(GridResults, EmptyColumns) {
  TempDir dir;
  const auto out = dir.file("grid.h5");
  GridResultsWriter w(out, fileInfo({}));
  GridSummary summary;
  summary.seed_groups.emplace_back();  // nothing found, no curve
  summary.seed_groups[0].median_lr = std::numeric_limits<double>::quiet_NaN();
  w.finish({}, summary, finder::StopReason::kCompleted, "");
  const GridResultsData d = readGridResults(out);
  EXPECT_TRUE(d.axes.empty());
  EXPECT_EQ(d.numbers.at("num_sweeps"), 1);
  EXPECT_TRUE(d.sweeps.empty());
  EXPECT_TRUE(d.summary_numbers.at("index").empty());
  EXPECT_TRUE(d.summary_strings.at("stop_reason").empty());
  ASSERT_EQ(d.seed_groups.size(), 1u);
  EXPECT_TRUE(d.seed_groups[0].series.at("lr").empty());
  EXPECT_TRUE(d.seed_groups[0].series.at("sweeps").empty());
  EXPECT_EQ(d.seed_groups[0].strings.at("label"), "");
}

// Calls out of order are the caller's bug: an lrfind::Error, and the file stays usable.
// A sweep that ends without having started (it failed first) is recorded all the same.
TEST(GridResults, MisuseIsAnErrorAndKeepsTheFile) {
  TempDir dir;
  const auto out = dir.file("grid.h5");
  GridResultsWriter w(out, fileInfo());
  GridSweep a = makeSweep(0, 0, 2);
  EXPECT_THROW(addStep(w, a, 0), Error) << "a step of a sweep not started";
  w.startSweep(a);
  EXPECT_THROW(w.startSweep(a), Error);
  GridSweep wide = a;
  wide.result.world_size = 3;
  EXPECT_THROW(addStep(w, wide, 0), Error) << "three losses for a two-rank sweep";
  GridSweep outside = makeSweep(7, 0, 1);
  EXPECT_THROW(w.startSweep(outside), Error) << "sweep 7 of 2";
  a = makeSweep(0, 0, 2);
  addStep(w, a, 0);
  endSweep(w, a, finder::StopReason::kCompleted);
  EXPECT_THROW(w.endSweep(a), Error) << "ended twice";
  GridSweep never = makeSweep(1, 1, 1);
  endSweep(w, never, finder::StopReason::kError);
  w.finish({a, never}, GridSummary{}, finder::StopReason::kError, "");
  const GridResultsData d = readGridResults(partialPath(out));
  EXPECT_EQ(d.sweeps.at(0).lr.size(), 1u);
  EXPECT_EQ(d.sweeps.at(1).lr.size(), 0u);
  EXPECT_EQ(d.sweeps.at(1).strings.at("stop_reason"), "error");
  EXPECT_EQ(d.sweeps.at(1).numbers.at("started_at"), never.started_at);
}

// The descriptor this process has open on `path`, -1 when none.
int descriptorOf(const std::string& path) {
  for (const auto& entry : fs::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    const auto target = fs::read_symlink(entry.path(), ec);
    if (!ec && target == fs::path(path)) return std::stoi(entry.path().filename().string());
  }
  return -1;
}

// A write that fails inside HDF5 with two sweeps open (here the file's descriptor turns
// read-only under HDF5: "Bad file descriptor"; on a cluster an I/O error): one IoError
// line naming the file and the OS error, the same from later calls, nothing on stderr,
// and on disk every open sweep holds exactly the steps flushed before. (A failed write
// that reaches the disk halfway, past RLIMIT_FSIZE or a quota, can leave a file HDF5 1.10
// calls truncated, as it does for a single sweep.)
TEST(GridResults, FailedWriteGivesUpTheFileAndKeepsEverySweepsSteps) {
  TempDir dir;
  const auto out = dir.file("grid.h5");
  ::testing::internal::CaptureStderr();
  std::string first, again;
  {
    GridResultsWriter w(out, fileInfo());
    auto [a, b] = startTwoSweeps(w);
    interleaveSteps(w, a, b, 3);
    const int fd = descriptorOf(partialPath(out));
    ASSERT_GE(fd, 0) << "HDF5's descriptor on " << partialPath(out);
    const int read_only = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    ASSERT_GE(read_only, 0);
    ASSERT_EQ(::dup2(read_only, fd), fd);
    ::close(read_only);
    try {
      addStep(w, a, 3);
    } catch (const IoError& e) {
      first = e.what();
    }
    try {
      addStep(w, b, 3);
    } catch (const IoError& e) {
      again = e.what();
    }
    try {
      w.finish({a, b}, GridSummary{}, finder::StopReason::kCompleted, "");
    } catch (const IoError& e) {
      EXPECT_EQ(e.what(), first);
    }
  }
  const std::string err = ::testing::internal::GetCapturedStderr();
  ASSERT_FALSE(first.empty()) << "the step after the descriptor went read-only failed";
  EXPECT_NE(first.find(partialPath(out)), std::string::npos) << first;
  EXPECT_NE(first.find(std::strerror(EBADF)), std::string::npos) << first;
  EXPECT_EQ(first.find('\n'), std::string::npos) << first;
  EXPECT_LT(first.size(), 300u) << first;
  EXPECT_EQ(again, first) << "later calls say the same";
  EXPECT_EQ(err, "") << "nothing on stderr: no HDF5 stack, no warnings about closing";

  EXPECT_FALSE(fs::exists(out));
  const GridResultsData d = readGridResults(partialPath(out));
  EXPECT_EQ(d.numbers.at("complete"), 0);
  ASSERT_EQ(d.sweeps.size(), 2u);
  for (const auto& [index, r] : d.sweeps) {
    EXPECT_EQ(r.lr.size(), 3u) << index;
    EXPECT_EQ(r.loss_per_rank.size(), 3u) << index;
    EXPECT_EQ(r.numbers.at("steps_completed"), 3) << index;
    EXPECT_EQ(r.numbers.at("complete"), 0) << index;
  }
  EXPECT_TRUE(d.summary_numbers.empty());
}

}  // namespace
}  // namespace lrfind::runtime
