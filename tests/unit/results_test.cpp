#include "runtime/results.h"

#include <cmath>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "common/error.h"
#include "finder/suggest.h"
#include "test_util.h"

namespace lrfind::runtime {
namespace {

using lrfind::testing::TempDir;

finder::SweepOptions options() {
  finder::SweepOptions o;
  o.min_lr = 1e-4;
  o.max_lr = 1;
  o.num_training = 30;
  o.skip_begin = 2;
  return o;
}

RunInfo info() {
  RunInfo i;
  i.model = "mlp";
  i.data = "synthetic";
  i.optimizer = "sgd";
  i.loss_fn = "cross_entropy";
  i.device = "cpu";
  i.batch_size = 16;
  i.global_batch_size = 32;
  i.seed = 9;
  i.world_size = 2;
  return i;
}

// Drives the writer like the sweep does, with a made-up two-rank curve.
finder::SweepResult drive(ResultsWriter& w, const finder::SweepOptions& o, int64_t steps) {
  finder::SweepResult r;
  r.world_size = 2;
  w.onStart(o, 2);
  for (int64_t k = 0; k < steps; ++k) {
    finder::StepRecord rec;
    rec.step = k;
    rec.lr = o.min_lr * std::pow(o.max_lr / o.min_lr, double(k) / (o.num_training - 1));
    rec.loss_raw = 2.0 - std::sin(0.1 * k);
    rec.loss = rec.loss_raw * 0.9;
    rec.loss_per_rank.push_back(rec.loss_raw - 0.1);
    rec.loss_per_rank.push_back(rec.loss_raw + 0.1);
    rec.seconds = 0.01 * (k + 1);
    w.onStep(rec);
    r.lr.push_back(rec.lr);
    r.loss.push_back(rec.loss);
    r.loss_raw.push_back(rec.loss_raw);
    r.loss_per_rank.push_back(rec.loss_per_rank);
    r.step_seconds.push_back(rec.seconds);
  }
  return r;
}

TEST(Results, RoundTripThroughHdf5) {
  TempDir dir;
  const auto out = dir.file("r.h5");
  const auto o = options();
  ResultsWriter w(out, info());
  auto r = drive(w, o, 25);
  r.stop_reason = finder::StopReason::kDiverged;
  r.suggestions = finder::suggestAll({r.lr, r.loss, o.mode, o.skip_begin, o.skip_end});
  EXPECT_FALSE(std::filesystem::exists(out)) << "nothing at --out before the end";
  w.onEnd(r);
  EXPECT_TRUE(std::filesystem::exists(out));
  EXPECT_FALSE(std::filesystem::exists(partialPath(out)));

  const ResultsData d = readResults(out);
  EXPECT_EQ(d.lr, r.lr);
  EXPECT_EQ(d.loss, r.loss);
  EXPECT_EQ(d.loss_raw, r.loss_raw);
  EXPECT_EQ(d.step_seconds, r.step_seconds);
  EXPECT_EQ(d.loss_per_rank, r.loss_per_rank);
  EXPECT_EQ(d.numbers.at("steps_completed"), 25);
  EXPECT_EQ(d.numbers.at("complete"), 1);
  EXPECT_EQ(d.numbers.at("world_size"), 2);
  EXPECT_EQ(d.numbers.at("batch_size"), 16);
  EXPECT_EQ(d.numbers.at("global_batch_size"), 32);
  EXPECT_EQ(d.numbers.at("num_training"), 30);
  EXPECT_EQ(d.numbers.at("min_lr"), 1e-4);
  EXPECT_EQ(d.numbers.at("early_stop_threshold"), 4.0);
  EXPECT_EQ(d.numbers.at("seed"), 9);
  EXPECT_EQ(d.strings.at("stop_reason"), "diverged");
  EXPECT_EQ(d.strings.at("mode"), "exponential");
  EXPECT_EQ(d.strings.at("suggest_method"), "steepest");
  EXPECT_EQ(d.strings.at("optimizer"), "sgd");
  EXPECT_EQ(d.strings.at("loss_fn"), "cross_entropy");
  EXPECT_EQ(d.strings.at("model"), "mlp");
  EXPECT_FALSE(d.strings.at("lrfind_version").empty());
  for (const auto& s : r.suggestions) {
    const std::string m = finder::toString(s.method);
    EXPECT_EQ(d.suggestions.at(m + "_index"), s.found ? s.index : -1) << m;
    if (s.found) {
      EXPECT_EQ(d.suggestions.at(m + "_lr"), s.lr) << m;
    }
  }
  EXPECT_EQ(d.numbers.at("suggested_lr"), r.suggestion().lr);
}

// The run's TOML is stored as it came, for --config to read back (and as the JSON
// summary's config_toml).
TEST(Results, ConfigTextIsStoredVerbatim) {
  TempDir dir;
  const auto out = dir.file("r.h5");
  const auto o = options();
  RunInfo with = info();
  with.config = "model=\"mlp\"\nmomentum=0.9\nbetas=\"0.9,0.999\"\n";
  {
    ResultsWriter w(out, with);
    drive(w, o, 2);
  }
  EXPECT_EQ(readResults(partialPath(out)).strings.at("config"), with.config);
  const auto bare = dir.file("bare.h5");
  {
    ResultsWriter w(bare, info());
    drive(w, o, 2);
  }
  EXPECT_EQ(readResults(partialPath(bare)).strings.count("config"), 0u) << "no config from library callers";
}

TEST(Results, PartialFileIsReadableMidSweep) {
  TempDir dir;
  const auto out = dir.file("r.h5");
  const auto o = options();
  ResultsWriter w(out, info());
  drive(w, o, 7);
  // The writer still holds the file open: what a killed job leaves behind.
  const ResultsData d = readResults(partialPath(out));
  EXPECT_EQ(d.lr.size(), 7u);
  EXPECT_EQ(d.numbers.at("steps_completed"), 7);
  EXPECT_EQ(d.numbers.at("complete"), 0);
  EXPECT_EQ(d.strings.at("stop_reason"), "running");
  EXPECT_TRUE(std::isnan(d.numbers.at("suggested_lr")));
}

TEST(Results, ErrorEndStaysPartial) {
  TempDir dir;
  const auto out = dir.file("r.h5");
  const auto o = options();
  ResultsWriter w(out, info());
  auto r = drive(w, o, 3);
  r.stop_reason = finder::StopReason::kError;
  r.error = "rank 1, step 3: bad batch";
  r.suggestions = finder::suggestAll({r.lr, r.loss, o.mode, o.skip_begin, o.skip_end});
  w.onEnd(r);
  EXPECT_FALSE(std::filesystem::exists(out));
  const ResultsData d = readResults(partialPath(out));
  EXPECT_EQ(d.numbers.at("complete"), 0);
  EXPECT_EQ(d.strings.at("stop_reason"), "error");
  EXPECT_EQ(d.strings.at("error"), "rank 1, step 3: bad batch");
}

TEST(Results, OutputPathChecks) {
  TempDir dir;
  const auto existing = dir.file("old.h5");
  std::ofstream(existing) << "keep me";
  auto message = [](const std::string& path, bool force) {
    try {
      checkOutputPath(path, force, "--out");
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(message(existing, false).find("exists; pass --force"), std::string::npos);
  EXPECT_EQ(message(existing, true), "");
  EXPECT_NE(message(dir.file("missing/dir/r.h5"), false).find("does not exist"), std::string::npos);
  EXPECT_NE(message(dir.path().string(), false).find("is a directory"), std::string::npos);
  EXPECT_EQ(message(dir.file("new.h5"), false), "");
}

}  // namespace
}  // namespace lrfind::runtime
