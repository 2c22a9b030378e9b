#include "runtime/results.h"

#include <sys/resource.h>

#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "common/error.h"
#include "finder/suggest.h"
#include "runtime/hdf5_handle.h"
#include "test_util.h"
#include "unit/run_fixture.h"

namespace lrfind::runtime {
namespace {

using lrfind::testing::TempDir;

finder::SweepOptions options() { return testing::sampleOptions(); }
RunInfo info() { return testing::sampleRunInfo(); }

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

// A write that fails inside HDF5 (here: past RLIMIT_FSIZE, "File too large"; on a
// cluster an I/O error or a quota) ends in one IoError line that names the file and the
// OS error in strerror's words, nothing on stderr (no HDF5 stack, no warnings), and the
// same error again from later calls. (A full disk is caught before HDF5 writes:
// Faults.DiskFullGivesOneLineAndKeepsTheFlushedSteps mounts a small tmpfs for it.)
TEST(Results, FailedWriteGivesOneLineWithTheOsError) {
  TempDir dir;
  const auto out = dir.file("r.h5");
  const auto o = options();
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
  auto* const saved_handler = std::signal(SIGXFSZ, SIG_IGN);  // write() then fails with EFBIG
  ::testing::internal::CaptureStderr();
  std::string first, again;
  int64_t steps = 0;
  {
    ResultsWriter w(out, info());
    w.onStart(o, 2);
    rlimit small = saved;
    small.rlim_cur = 64 * 1024;
    ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
    finder::StepRecord rec;
    rec.loss_per_rank = {1.0, 1.0};
    try {
      for (; steps < 1000000; ++steps) {
        rec.step = steps;
        rec.lr = rec.loss = rec.loss_raw = 1.0;
        w.onStep(rec);
      }
    } catch (const IoError& e) {
      first = e.what();
    }
    try {
      w.onStep(rec);
    } catch (const IoError& e) {
      again = e.what();
    }
  }  // the destructor closes what is left, quietly
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &saved), 0);
  std::signal(SIGXFSZ, saved_handler);
  const std::string err = ::testing::internal::GetCapturedStderr();

  ASSERT_FALSE(first.empty()) << "64 KiB must not hold " << steps << " steps";
  EXPECT_GT(steps, 0) << "the first steps fit";
  EXPECT_NE(first.find(partialPath(out)), std::string::npos) << first;
  EXPECT_NE(first.find(std::strerror(EFBIG)), std::string::npos) << first;
  EXPECT_EQ(first.find('\n'), std::string::npos) << first;
  EXPECT_LT(first.size(), 300u) << "the cause, not HDF5's whole stack: " << first;
  EXPECT_EQ(again, first) << "later calls say the same";
  EXPECT_EQ(err, "") << "nothing on stderr: no HDF5 stack, no warnings about closing";
}

// The innermost entry of HDF5's error stack is the cause; an OS error in it comes out
// in strerror's words.
TEST(Hdf5Errors, CauseIsTheInnermostEntryAndItsOsError) {
  // The driver's message on a full disk, as HDF5 1.10 writes it (two lines).
  const std::string enospc =
      "file write failed: time = Sun Nov 29 13:24:24 2026\n, filename = '/mnt/r.h5.partial', file descriptor = 3, "
      "errno = 28, error message = 'No space left on device', buf = 0x7fc1ac08c4e0, total write size = 1640, "
      "bytes this sub-write = 1640, bytes actually written = 18446744073709551615, offset = 0";
  const h5::Cause full = h5::causeOf(enospc);
  EXPECT_EQ(full.os_error, ENOSPC);
  EXPECT_EQ(full.text, std::strerror(ENOSPC));
  EXPECT_EQ(h5::causeOf("file read failed: errno = 5, error message = 'Input/output error'").text,
            std::strerror(EIO));
  const h5::Cause truncated = h5::causeOf("truncated file: eof = 1024,\n  sblock->base_addr = 0, stored_eof = 2048");
  EXPECT_EQ(truncated.os_error, 0);
  EXPECT_EQ(truncated.text, "truncated file: eof = 1024, sblock->base_addr = 0, stored_eof = 2048");
  EXPECT_EQ(h5::causeOf("errno = 0, nothing").os_error, 0);

  // A real stack: opening a file that is not there.
  h5::silenceErrors();
  TempDir dir;
  const std::string missing = dir.file("missing.h5");
  try {
    h5::file(H5Fopen(missing.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), "open " + missing);
    FAIL() << "opened a file that does not exist";
  } catch (const h5::Failure& e) {
    EXPECT_EQ(e.cause().os_error, ENOENT);
    EXPECT_EQ(std::string(e.what()), "open " + missing + ": " + std::strerror(ENOENT));
  }
  // And one without an OS error: a file cut short.
  const std::string cut = dir.file("cut.h5");
  lrfind::testing::writeClassification(cut, 512, 16, 4);
  std::filesystem::resize_file(cut, std::filesystem::file_size(cut) / 2);
  try {
    h5::file(H5Fopen(cut.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), "open " + cut);
    FAIL() << "opened a truncated file";
  } catch (const h5::Failure& e) {
    EXPECT_EQ(e.cause().os_error, 0);
    EXPECT_NE(e.cause().text.find("truncated file"), std::string::npos) << e.what();
    EXPECT_EQ(e.cause().text.find('\n'), std::string::npos) << e.what();
  }
  // The stack was taken: nothing is left on it for the next call to report.
  EXPECT_EQ(h5::takeCause().text, "no HDF5 error details");
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
