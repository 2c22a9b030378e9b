// --precision bf16 end to end through lrfind_dist: the built-in MLP and CNN run under
// bfloat16 autocast, near the fp32 curve (the bound is derived in sweep_test's
// Sweep.Bf16KeepsFloat32WeightsAndStaysNearTheFp32Curve), and two ranks give one
// process's curve within the same bound.

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "cli_util.h"
#include "runtime/results.h"

namespace lrfind {
namespace {

using namespace lrfind::testing;

double largestGap(const std::vector<double>& a, const std::vector<double>& b, std::size_t steps) {
  EXPECT_GE(a.size(), steps);
  EXPECT_GE(b.size(), steps);
  double worst = 0;
  for (std::size_t k = 0; k < std::min({a.size(), b.size(), steps}); ++k) {
    worst = std::max(worst, std::abs(a[k] - b[k]) / std::abs(b[k]));
  }
  return worst;
}

runtime::ResultsData sweep(const TempDir& dir, const std::string& args, const std::string& out,
                           const std::string& launcher = "") {
  const auto r = runCli(dir, "--plot '' --force --num-training 30 --min-lr 1e-5 --max-lr 1e-2 --out " + out + " " + args,
                        launcher);
  EXPECT_EQ(r.code, 0) << args << ": " << r.err;
  if (r.code != 0) return {};
  return runtime::readResults(dir.file(out));
}

TEST(PrecisionCli, Bf16MlpAndCnnStayNearTheFp32Curve) {
  TempDir dir;
  for (const std::string model : {"--model mlp --data synthetic", "--model cnn --data synthetic-images"}) {
    const auto fp32 = sweep(dir, model, "fp32.h5");
    const auto bf16 = sweep(dir, model + " --precision bf16", "bf16.h5");
    EXPECT_EQ(fp32.strings.at("precision"), "fp32");
    EXPECT_EQ(bf16.strings.at("precision"), "bf16");
    const double gap = largestGap(bf16.loss_raw, fp32.loss_raw, 30);
    std::printf("%s: bf16 vs fp32, largest relative gap over 30 steps %.2g\n", model.c_str(), gap);
    EXPECT_LT(gap, 1e-2) << model;
    EXPECT_GT(gap, 0.0) << model << ": the sweep did not run in bfloat16";
  }
}

TEST(PrecisionCli, Bf16TwoRanksGiveOneProcessesCurveWithinTheBound) {
  TempDir dir;
  const auto one = sweep(dir, "--precision bf16 --batch-size 32", "one.h5");
  const auto two = sweep(dir, "--precision bf16 --batch-size 16", "two.h5", mpirun(2));
  const double gap = largestGap(two.loss_raw, one.loss_raw, 30);
  std::printf("bf16, np 2 x 16 vs np 1 x 32: largest relative gap over 30 steps %.2g\n", gap);
  EXPECT_LT(gap, 1e-2);
}

TEST(PrecisionCli, PrecisionIsAGridAxis) {
  TempDir dir;
  const auto r = runCli(dir, "--plot '' --num-training 12 --grid precision=fp32,bf16 --out g.h5");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto grid = runtime::readGridResults(dir.file("g.h5"));
  ASSERT_EQ(grid.sweeps.size(), 2u);
  EXPECT_EQ(grid.sweeps.at(0).strings.at("precision"), "fp32");
  EXPECT_EQ(grid.sweeps.at(1).strings.at("precision"), "bf16");
  EXPECT_NE(grid.sweeps.at(0).loss_raw, grid.sweeps.at(1).loss_raw);
}

}  // namespace
}  // namespace lrfind
