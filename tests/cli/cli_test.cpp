// End-to-end tests of the lrfind_dist binary: exit codes, output files, --print-lr,
// refusal to overwrite, and one clear error line per bad value.

#include <sys/wait.h>

#include <chrono>
#include <cstring>
#include <cmath>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/script.h>
#include <torch/torch.h>

#include "cli_util.h"
#include "finder/options.h"
#include "runtime/factories.h"
#include "runtime/results.h"

namespace lrfind {
namespace {

using namespace lrfind::testing;

TEST(Cli, DefaultRunWritesResultsAndPlot) {
  TempDir dir;
  const auto r = runCli(dir, "");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("suggested lr: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("steepest *"), std::string::npos) << r.out;
  EXPECT_TRUE(std::filesystem::exists(dir.file("lrfind.h5")));
  EXPECT_TRUE(std::filesystem::exists(dir.file("lrfind.svg")));
  EXPECT_FALSE(std::filesystem::exists(dir.file("lrfind.h5.partial")));
  const auto d = runtime::readResults(dir.file("lrfind.h5"));
  EXPECT_EQ(d.numbers.at("complete"), 1);
  EXPECT_EQ(d.lr.size(), static_cast<std::size_t>(d.numbers.at("steps_completed")));
  EXPECT_EQ(d.strings.at("model"), "mlp");
  EXPECT_EQ(d.strings.at("data"), "synthetic");
  // Not a terminal: periodic timestamped log lines on stderr.
  EXPECT_NE(r.err.find("step 10/100"), std::string::npos) << r.err;
}

TEST(Cli, PrintLrPrintsOnlyTheSuggestion) {
  TempDir dir;
  const auto r = runCli(dir, "--print-lr --out r.h5 --plot ''");
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_EQ(lines(r.out), 1) << r.out;
  const double lr = std::stod(r.out);
  const auto d = runtime::readResults(dir.file("r.h5"));
  EXPECT_NEAR(lr, d.numbers.at("suggested_lr"), 1e-5 * lr);
  EXPECT_FALSE(std::filesystem::exists(dir.file("lrfind.svg"))) << "--plot '' writes no plot";
  EXPECT_NE(r.err.find("suggested lr"), std::string::npos) << "the summary goes to stderr";
}

TEST(Cli, RefusesToOverwriteWithoutForce) {
  TempDir dir;
  ASSERT_EQ(runCli(dir, "--num-training 20 --skip-begin 2").code, 0);
  const std::string before = slurp(dir.file("lrfind.h5"));
  const auto again = runCli(dir, "--num-training 30 --skip-begin 2");
  EXPECT_EQ(again.code, 2);
  EXPECT_NE(again.err.find("--out lrfind.h5: exists; pass --force"), std::string::npos) << again.err;
  EXPECT_EQ(slurp(dir.file("lrfind.h5")), before) << "the old file must be untouched";
  const auto forced = runCli(dir, "--num-training 30 --skip-begin 2 --force");
  ASSERT_EQ(forced.code, 0) << forced.err;
  EXPECT_EQ(runtime::readResults(dir.file("lrfind.h5")).numbers.at("num_training"), 30);
}

TEST(Cli, HelpAndVersion) {
  TempDir dir;
  const auto help = runCli(dir, "--help");
  EXPECT_EQ(help.code, 0);
  for (const char* flag : {"--model", "--data", "--x-key", "--y-key", "--loss", "--optimizer", "--momentum",
                           "--nesterov", "--weight-decay", "--betas", "--eps", "--batch-size", "--min-lr",
                           "--max-lr", "--num-training", "--mode", "--early-stop-threshold", "--beta",
                           "--suggest", "--skip-begin", "--skip-end", "--accumulate", "--seed", "--no-shuffle",
                           "--threads", "--device", "--allow-gpu-sharing", "--comm-timeout", "--out", "--json", "--plot", "--print-lr", "--force",
                           "--verbose", "--version"}) {
    EXPECT_NE(help.out.find(flag), std::string::npos) << flag;
  }
  EXPECT_NE(help.out.find("=1e-08"), std::string::npos) << "defaults are shown";
  EXPECT_NE(help.out.find("=100"), std::string::npos);
  const auto version = runCli(dir, "--version");
  EXPECT_EQ(version.code, 0);
  EXPECT_NE(version.out.find("lrfind 0."), std::string::npos) << version.out;
  EXPECT_NE(version.out.find("LibTorch"), std::string::npos) << version.out;
  EXPECT_NE(version.out.find("NCCL"), std::string::npos) << version.out;
  EXPECT_NE(version.out.find("MPI: "), std::string::npos) << version.out;
  EXPECT_NE(version.out.find("communication backends: self, mpi"), std::string::npos) << version.out;
}

TEST(Cli, BuiltInImagesTrainTheCnnAndTheJsonHasTimings) {
  TempDir dir;
  const auto r = runCli(dir, "--model cnn --data synthetic-images --num-training 8 --json s.json --plot ''");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(std::ifstream(dir.file("s.json")));
  EXPECT_EQ(j["config"]["data"], "synthetic-images");
  EXPECT_EQ(j["config"]["model"], "cnn");
  EXPECT_GT(j["timing"]["seconds_per_step_median"].get<double>(), 0.0);
  EXPECT_GE(j["timing"]["seconds_total"].get<double>(), j["timing"]["seconds_per_step_median"].get<double>());
}

TEST(Cli, TorchScriptModelOnHdf5DataWithJson) {
  TempDir dir;
  lrfind::testing::writeClassification(dir.file("d.h5"), 600, 16, 10);
  saveScriptModel(dir.file("m.pt"), 16, 10);
  const auto r = runCli(dir, "--model m.pt --data d.h5 --min-lr 1e-4 --max-lr 1e4 --json s.json --out r.h5");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(slurp(dir.file("s.json")));
  const auto d = runtime::readResults(dir.file("r.h5"));
  EXPECT_EQ(j["suggested_lr"].get<double>(), d.numbers.at("suggested_lr"));
  EXPECT_EQ(j["steps_completed"].get<int64_t>(), static_cast<int64_t>(d.lr.size()));
  EXPECT_EQ(d.strings.at("model"), "m.pt");
  EXPECT_EQ(d.strings.at("stop_reason"), "diverged");
  for (const char* m : {"steepest", "valley", "minimum", "steep", "slide"}) {
    EXPECT_TRUE(j["suggestions"].contains(m)) << m;
  }
}

// --write-config prints every flag's value; --config with that file repeats the run bit
// for bit, and so does the configuration stored in the results file.
TEST(Cli, WrittenConfigRepeatsTheRunBitForBit) {
  TempDir dir;
  const std::string flags =
      "--optimizer adam --betas 0.8,0.95 --min-lr 3.3e-6 --max-lr 7 --num-training 40 --seed 5 --beta 0.9 "
      "--mode linear --early-stop-threshold none --plot '' --force ";
  const auto written = runCli(dir, flags + "--write-config");
  ASSERT_EQ(written.code, 0) << written.err;
  EXPECT_NE(written.out.find("min-lr=3.3e-6"), std::string::npos) << written.out;
  EXPECT_NE(written.out.find("threads=1"), std::string::npos) << "every flag, defaults and all:\n" << written.out;
  std::ofstream(dir.file("run.toml")) << written.out;
  ASSERT_EQ(runCli(dir, flags + "--out direct.h5").code, 0);
  const auto again = runCli(dir, "--config run.toml --out again.h5");
  ASSERT_EQ(again.code, 0) << again.err;
  const auto direct = runtime::readResults(dir.file("direct.h5"));
  const auto repeated = runtime::readResults(dir.file("again.h5"));
  EXPECT_EQ(repeated.strings.at("mode"), "linear");
  ASSERT_EQ(repeated.lr.size(), direct.lr.size());
  for (std::size_t k = 0; k < direct.lr.size(); ++k) {
    EXPECT_EQ(std::memcmp(&repeated.lr[k], &direct.lr[k], sizeof(double)), 0) << k;
    EXPECT_EQ(std::memcmp(&repeated.loss_raw[k], &direct.loss_raw[k], sizeof(double)), 0) << k;
  }
  // The configuration stored in the results is a config file too.
  std::ofstream(dir.file("stored.toml")) << direct.strings.at("config");
  ASSERT_EQ(runCli(dir, "--config stored.toml --out stored.h5").code, 0);
  EXPECT_EQ(runtime::readResults(dir.file("stored.h5")).loss_raw, direct.loss_raw);
}

TEST(Cli, CommandLineWinsOverTheConfigFile) {
  TempDir dir;
  std::ofstream(dir.file("c.toml")) << "max-lr = 10\nnum-training = 30\noptimizer = \"rmsprop\"\n";
  const auto r = runCli(dir, "--config c.toml --max-lr 2 --plot ''");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto d = runtime::readResults(dir.file("lrfind.h5"));
  EXPECT_EQ(d.numbers.at("max_lr"), 2.0);
  EXPECT_EQ(d.numbers.at("num_training"), 30.0);
  EXPECT_EQ(d.strings.at("optimizer"), "rmsprop");
  std::ofstream(dir.file("bad.toml")) << "max-lr = \"ten\"\n";
  const auto bad = runCli(dir, "--config bad.toml --out bad.h5");
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.err.find("max-lr"), std::string::npos) << bad.err;
  const auto missing = runCli(dir, "--config nope.toml --out nope.h5");
  EXPECT_EQ(missing.code, 2);
  EXPECT_NE(missing.err.find("nope.toml"), std::string::npos) << missing.err;
}

// A typo in a config file is an error that names the file and the key, never a line
// that is silently ignored.
TEST(Cli, UnknownConfigKeysAndTablesAreErrors) {
  TempDir dir;
  struct Case {
    const char* toml;
    const char* expected;
  };
  for (const auto& c : {
           Case{"max_lr = 10\n", "--config c.toml: unknown key \"max_lr\" (did you mean \"max-lr\"?)"},
           Case{"max-lrr = 10\n", "--config c.toml: unknown key \"max-lrr\" (did you mean \"max-lr\"?)"},
           Case{"num-training = 30\n[sweep]\nmax-lr = 10\n", "--config c.toml: unknown table [sweep]"},
           Case{"sweep.max-lr = 10\n", "--config c.toml: unknown key \"sweep.max-lr\" (did you mean \"max-lr\"?)"},
           Case{"colour = 1\n", "--config c.toml: unknown key \"colour\" (keys are the flags without"},
           Case{"write-config = true\n", "--config c.toml: \"write-config\" cannot be set in a config file"},
       }) {
    std::ofstream(dir.file("c.toml")) << c.toml;
    const auto r = runCli(dir, "--config c.toml");
    EXPECT_EQ(r.code, 2) << c.toml;
    EXPECT_EQ(lines(r.err), 1) << r.err;
    EXPECT_EQ(r.err.rfind("lrfind_dist: error: ", 0), 0u) << r.err;
    EXPECT_NE(r.err.find(c.expected), std::string::npos) << r.err;
    EXPECT_FALSE(std::filesystem::exists(dir.file("lrfind.h5"))) << c.toml;
  }
}

TEST(Cli, UnknownFlagSuggestsTheClosest) {
  TempDir dir;
  const auto reordered = runCli(dir, "--lr-max 1");
  EXPECT_EQ(reordered.code, 2);
  EXPECT_EQ(reordered.err, "lrfind_dist: error: unknown flag --lr-max; did you mean --max-lr? (see --help)\n");
  const auto typo = runCli(dir, "--bach-size=8");
  EXPECT_EQ(typo.code, 2);
  EXPECT_EQ(typo.err, "lrfind_dist: error: unknown flag --bach-size; did you mean --batch-size? (see --help)\n");
  const auto distant = runCli(dir, "--no-such-flag");
  EXPECT_EQ(distant.code, 2);
  EXPECT_EQ(distant.err, "lrfind_dist: error: unknown flag --no-such-flag (see --help)\n");
  EXPECT_FALSE(std::filesystem::exists(dir.file("lrfind.h5")));
}

// The names in --help come from the lists the runtime and the finder accept.
TEST(Cli, HelpListsTheNamesTheLibraryKnows) {
  TempDir dir;
  const auto help = runCli(dir, "--help");
  ASSERT_EQ(help.code, 0);
  const auto line = [&](const std::string& flag) {
    const auto at = help.out.find("  " + flag + " ");
    return at == std::string::npos ? std::string() : help.out.substr(at, help.out.find('\n', at) - at);
  };
  for (const auto& name : runtime::optimizerNames()) {
    EXPECT_NE(line("--optimizer").find(name), std::string::npos) << name;
  }
  for (const auto& name : runtime::lossNames()) {
    EXPECT_NE(line("--loss").find(name), std::string::npos) << name;
  }
  for (auto m : finder::allSuggestMethods()) {
    EXPECT_NE(line("--suggest").find(finder::toString(m)), std::string::npos) << finder::toString(m);
  }
  for (auto m : {finder::Mode::kExponential, finder::Mode::kLinear}) {
    EXPECT_NE(line("--mode").find(finder::toString(m)), std::string::npos) << finder::toString(m);
  }
}

TEST(Cli, TooFewPointsWarnsAndStillSucceeds) {
  TempDir dir;
  const auto r = runCli(dir, "--num-training 8");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("warning: --skip-begin 10 + --skip-end 1 leave 0 of 8 points"), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("no suggestion: only 0 usable point(s)"), std::string::npos) << r.out;
  const auto p = runCli(dir, "--num-training 8 --print-lr --out p.h5 --plot ''");
  EXPECT_EQ(p.code, 0);
  EXPECT_EQ(p.out, "") << "no number on stdout when there is no suggestion";
}

TEST(Cli, KilledRunLeavesAReadablePartialFile) {
  TempDir dir;
  Job job(dir, "--num-training 200000 --early-stop-threshold none --max-lr 1e-3");
  const auto partial = dir.file("lrfind.h5.partial");
  ASSERT_TRUE(waitForSize(partial, 40000)) << slurp(dir.file("stderr.txt"));
  ASSERT_EQ(::kill(job.pid(), SIGKILL), 0);
  ASSERT_TRUE(job.wait(10.0 * timeScale()).has_value());
  const auto d = runtime::readResults(partial);
  EXPECT_EQ(d.numbers.at("complete"), 0);
  EXPECT_EQ(d.strings.at("stop_reason"), "running");
  EXPECT_GT(d.lr.size(), 0u);
  // steps_completed is written after the rows of its step: it never exceeds them.
  EXPECT_LE(d.numbers.at("steps_completed"), static_cast<double>(d.lr.size()));
  EXPECT_GE(d.numbers.at("steps_completed"), static_cast<double>(d.lr.size()) - 1);
  EXPECT_FALSE(std::filesystem::exists(dir.file("lrfind.h5")));
}

TEST(Cli, CudaWithoutAGpuIsAnInputError) {
  if (torch::cuda::is_available()) GTEST_SKIP() << "a CUDA GPU is visible; this checks the CPU-only case";
  TempDir dir;
  const auto r = runCli(dir, "--device cuda");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--device cuda"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace lrfind

namespace lrfind {
namespace {

using namespace lrfind::testing;

// NLL on raw logits: a loss near zero that falls below it without bound. It used to stop
// at step 3 as "diverged" (4 x a negative best); now it runs while it falls.
TEST(Cli, NllOnRawLogitsRunsWhileTheLossFalls) {
  TempDir dir;
  const auto r = runCli(dir, "--loss nll --plot ''");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto d = runtime::readResults(dir.file("lrfind.h5"));
  EXPECT_GT(d.lr.size(), 50u);
  EXPECT_LT(*std::min_element(d.loss.begin(), d.loss.end()), 0) << "the curve goes below zero";
  const std::string reason = d.strings.at("stop_reason");
  EXPECT_TRUE(reason == "completed" || reason == "nonfinite" || d.strings.at("stop_rule") == "shift") << reason;
  EXPECT_TRUE(d.numbers.count("stop_scale"));
}

TEST(MpiCli, RanksWithSmallerBatchesEqualOneProcess) {
  TempDir dir;
  lrfind::testing::writeClassification(dir.file("d.h5"), 700, 16, 10);
  saveScriptModel(dir.file("m.pt"), 16, 10);
  const std::string common =
      "--model m.pt --data d.h5 --optimizer sgd --momentum 0.9 --min-lr 1e-4 --max-lr 1 --num-training 60 "
      "--no-shuffle --plot '' ";
  ASSERT_EQ(runCli(dir, common + "--batch-size 32 --out one.h5").code, 0);
  const auto one = runtime::readResults(dir.file("one.h5"));
  for (int np : {2, 4}) {
    const std::string out = "np" + std::to_string(np) + ".h5";
    const auto r = runCli(dir, common + "--check-consistency --batch-size " + std::to_string(32 / np) + " --out " + out,
                          mpirun(np));
    ASSERT_EQ(r.code, 0) << r.err;
    const auto d = runtime::readResults(dir.file(out));
    EXPECT_EQ(d.numbers.at("world_size"), np);
    EXPECT_EQ(d.numbers.at("global_batch_size"), 32);
    ASSERT_EQ(d.loss_raw.size(), one.loss_raw.size()) << np;
    for (std::size_t k = 0; k < d.loss_raw.size(); ++k) {
      EXPECT_EQ(d.lr[k], one.lr[k]);
      EXPECT_LT(std::abs(d.loss_raw[k] - one.loss_raw[k]) / one.loss_raw[k], 1e-5) << "np " << np << " step " << k;
      EXPECT_EQ(d.loss_per_rank[k].size(), static_cast<std::size_t>(np));
    }
    EXPECT_EQ(d.suggestions, one.suggestions) << np;
  }
}

// Gradient averaging at np 2 on one node: shared memory and overlap by default, said
// with --verbose only; MPI messages after backward on request; the same curve, bit for
// bit (two ranks: every sum is a + b either way).
TEST(MpiCli, AveragingPathsGiveTheSameCurveAndVerboseNamesThem) {
  TempDir dir;
  // 10 KiB buckets: the built-in MLP's gradients span several, so there is something to
  // overlap (one bucket averages after backward).
  const std::string common = "--num-training 30 --bucket-mb 0.01 --plot '' ";
  const auto quiet = runCli(dir, common + "--out quiet.h5", mpirun(2));
  ASSERT_EQ(quiet.code, 0) << quiet.err;
  EXPECT_EQ(quiet.err.find("lrfind_dist: gradients:"), std::string::npos) << quiet.err;
  const auto fast = runCli(dir, common + "--verbose --out fast.h5", mpirun(2));
  ASSERT_EQ(fast.code, 0) << fast.err;
  EXPECT_NE(fast.err.find("lrfind_dist: gradients: shared memory, overlapped with backward"), std::string::npos)
      << fast.err;
  const auto plain = runCli(dir, common + "--verbose --no-overlap --no-shared-memory --out plain.h5", mpirun(2));
  ASSERT_EQ(plain.code, 0) << plain.err;
  EXPECT_NE(plain.err.find("lrfind_dist: gradients: mpi, after backward"), std::string::npos) << plain.err;
  const auto a = runtime::readResults(dir.file("fast.h5"));
  const auto b = runtime::readResults(dir.file("plain.h5"));
  ASSERT_EQ(a.loss_raw.size(), b.loss_raw.size());
  for (std::size_t k = 0; k < a.loss_raw.size(); ++k) EXPECT_EQ(a.loss_raw[k], b.loss_raw[k]) << "step " << k;
  EXPECT_EQ(a.suggestions, b.suggestions);
}

TEST(MpiCli, FaultOnOneRankEndsEveryRankWithOneMessage) {
  TempDir dir;
  ::setenv("LRFIND_FAULT_INJECT", "1:5", 1);
  const auto t0 = std::chrono::steady_clock::now();
  const auto r = runCli(dir, "--num-training 50", mpirun(2));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ::unsetenv("LRFIND_FAULT_INJECT");
  EXPECT_NE(r.code, 0);
  EXPECT_LT(seconds, 10.0 * timeScale()) << "every rank must be gone within 10 s";
  const std::string line = "lrfind_dist: error: rank 1, step 5: fault injected by LRFIND_FAULT_INJECT";
  std::size_t count = 0;
  for (std::size_t at = r.err.find(line); at != std::string::npos; at = r.err.find(line, at + 1)) ++count;
  EXPECT_EQ(count, 1u) << "rank 0 reports the failure every rank agreed on, once:\n" << r.err;
  EXPECT_TRUE(std::filesystem::exists(dir.file("lrfind.h5.partial"))) << "rank 0 keeps the steps done";
  EXPECT_EQ(runtime::readResults(dir.file("lrfind.h5.partial")).strings.at("stop_reason"), "error");
}

TEST(MpiCli, SetupErrorsAreAgreedAndExitTwo) {
  TempDir dir;
  const auto r = runCli(dir, "--out no/such/dir/r.h5", mpirun(2));
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("rank 0: --out no/such/dir/r.h5"), std::string::npos) << r.err;
  if (!torch::cuda::is_available()) {
    const auto cuda = runCli(dir, "--device cuda", mpirun(2));
    EXPECT_EQ(cuda.code, 2) << cuda.err;
    EXPECT_NE(cuda.err.find("rank 0: --device cuda: no usable CUDA GPU"), std::string::npos) << cuda.err;
  }
  const auto self = runCli(dir, "--backend self", mpirun(2));
  EXPECT_EQ(self.code, 2);
  EXPECT_NE(self.err.find("--backend self, but openmpi started 2 ranks"), std::string::npos) << self.err;
}

}  // namespace
}  // namespace lrfind
