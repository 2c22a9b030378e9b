// Validation mode end to end through lrfind_dist: --val-fraction and --val-data, the
// loss over held-out data after every step, on one process and on two ranks.

#include <hdf5.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "cli_util.h"
#include "runtime/results.h"

namespace lrfind {
namespace {

using namespace lrfind::testing;

runtime::ResultsData sweep(const TempDir& dir, const std::string& args, const std::string& out,
                           const std::string& launcher = "") {
  const auto r = runCli(dir, "--plot '' --out " + out + " " + args, launcher);
  EXPECT_EQ(r.code, 0) << args << ": " << r.err;
  if (r.code != 0) return {};
  return runtime::readResults(dir.file(out));
}

double maxRelativeDifference(const std::vector<double>& a, const std::vector<double>& b) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0;
  for (std::size_t k = 0; k < std::min(a.size(), b.size()); ++k) {
    worst = std::max(worst, std::abs(a[k] - b[k]) / std::abs(b[k]));
  }
  return worst;
}

std::vector<double> smoothed(const std::vector<double>& raw, double beta = 0.98) {
  // Lightning's EMA with bias correction, as finder/smoothing.h computes it.
  std::vector<double> out;
  double avg = 0;
  for (std::size_t k = 0; k < raw.size(); ++k) {
    avg = beta * avg + (1 - beta) * raw[k];
    out.push_back(avg / (1 - std::pow(beta, static_cast<double>(k + 1))));
  }
  return out;
}

// --val-fraction 0.2 of a 1000-row file: rows 800-999 are held out. Two ranks with
// batch 16 see what one process with batch 32 sees, and evaluate half of the held-out
// rows each: the same validation loss within 1e-6.
TEST(ValidationCli, TwoRanksGiveTheValidationLossOfOneProcess) {
  TempDir dir;
  writeClassification(dir.file("d.h5"), 1000, 32, 10);
  const std::string common = "--data d.h5 --val-fraction 0.2 --num-training 30 --min-lr 1e-4 --max-lr 0.3 ";
  const auto one = sweep(dir, common + "--batch-size 32", "one.h5");
  const auto two = sweep(dir, common + "--batch-size 16", "two.h5", mpirun(2));
  ASSERT_EQ(one.val_loss.size(), 30u);
  ASSERT_EQ(two.val_loss.size(), 30u);
  const double worst = maxRelativeDifference(two.val_loss, one.val_loss);
  std::printf("np 2 vs np 1: largest relative difference of val_loss %.3g\n", worst);
  EXPECT_LT(worst, 1e-6);
  for (const auto* r : {&one, &two}) {
    EXPECT_EQ(r->strings.at("monitor"), "val");
    EXPECT_NE(r->strings.at("val_data").find("d.h5 rows 800-999 (--val-fraction 0.2)"), std::string::npos)
        << r->strings.at("val_data");
    EXPECT_EQ(r->numbers.at("val_samples"), 200);
    EXPECT_EQ(r->numbers.at("val_batches"), 0);
    ASSERT_EQ(r->eval_seconds.size(), 30u);
    for (double t : r->eval_seconds) EXPECT_GT(t, 0.0);
    // The monitored loss is the smoothed validation loss.
    const auto expected = smoothed(r->val_loss);
    for (std::size_t k = 0; k < expected.size(); ++k) EXPECT_NEAR(r->loss[k], expected[k], 1e-12 * expected[k]);
  }
}

// --monitor train keeps recording the validation loss but smooths, stops on and
// suggests from the training loss.
TEST(ValidationCli, MonitorTrainSuggestsFromTheTrainingCurve) {
  TempDir dir;
  writeClassification(dir.file("d.h5"), 600, 32, 10);
  const std::string common = "--data d.h5 --val-fraction 0.25 --num-training 40 --min-lr 1e-4 --max-lr 3 "
                             "--early-stop-threshold none --batch-size 32 ";
  const auto val = sweep(dir, common, "val.h5");
  const auto train = sweep(dir, common + "--monitor train", "train.h5");
  EXPECT_EQ(val.strings.at("monitor"), "val");
  EXPECT_EQ(train.strings.at("monitor"), "train");
  EXPECT_EQ(train.val_loss, val.val_loss) << "the same training, the same evaluations";
  EXPECT_EQ(train.loss_raw, val.loss_raw);
  const auto from_train = smoothed(train.loss_raw);
  for (std::size_t k = 0; k < from_train.size(); ++k) EXPECT_NEAR(train.loss[k], from_train[k], 1e-12 * from_train[k]);
  EXPECT_NE(train.loss, val.loss);
  EXPECT_NE(train.suggestions.at("steepest_index"), val.suggestions.at("steepest_index"))
      << "the two curves fall fastest at different steps here";
}

// Held-out rows whose inputs are 1000 (every other row is about 1): a training batch
// holding one would show as a jump of the training loss. 100 steps of 32 on 800 rows
// run through the training rows four times.
TEST(ValidationCli, HeldOutRowsAreNeverTrainedOn) {
  TempDir dir;
  const hsize_t n = 1000, features = 8;
  std::vector<float> x(n * features);
  std::vector<int64_t> y(n);
  uint32_t state = 3;
  for (hsize_t i = 0; i < n; ++i) {
    y[i] = static_cast<int64_t>(i % 4);
    for (hsize_t f = 0; f < features; ++f) {
      state = state * 1664525u + 1013904223u;
      const float noise = static_cast<float>(state >> 8) / static_cast<float>(1u << 24);
      x[i * features + f] = i >= 800 ? 1000.0f : noise + (static_cast<int64_t>(f % 4) == y[i] ? 1.0f : 0.0f);
    }
  }
  hid_t file = H5Fcreate(dir.file("poisoned.h5").c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  writeDataset(file, "x", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {n, features}, x.data());
  writeDataset(file, "y", H5T_STD_I64LE, H5T_NATIVE_INT64, {n}, y.data());
  H5Fclose(file);
  const std::string args = "--data poisoned.h5 --val-fraction 0.2 --monitor train --num-training 100 "
                           "--batch-size 32 --min-lr 1e-5 --max-lr 1e-3 --early-stop-threshold none ";
  for (const std::string& launcher : {std::string(), mpirun(2)}) {
    const auto r = sweep(dir, args, launcher.empty() ? "np1.h5" : "np2.h5", launcher);
    ASSERT_EQ(r.loss_raw.size(), 100u) << launcher;
    const double worst_train = *std::max_element(r.loss_raw.begin(), r.loss_raw.end());
    EXPECT_LT(worst_train, 3.0) << launcher << ": a held-out row was trained on";
    EXPECT_GT(r.val_loss.front(), 10 * worst_train) << launcher << ": the held-out rows are the poisoned ones";
  }
}

// --val-data with its labels in another file gives the loss of the same rows with labels
// inside; --val-batches 2 evaluates the first two global batches only: the loss of a
// file that holds just those rows.
TEST(ValidationCli, ValDataWithItsLabelsElsewhereAndValBatches) {
  TempDir dir;
  writeClassification(dir.file("train.h5"), 512, 16, 4, /*seed=*/1);
  writeClassification(dir.file("val.h5"), 300, 16, 4, /*seed=*/2);
  writeClassification(dir.file("val64.h5"), 64, 16, 4, /*seed=*/2);  // the first 64 rows of val.h5
  {  // val.h5's inputs alone, and its labels alone as uint8 [300, 1]
    hid_t in = H5Fopen(dir.file("val.h5").c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    std::vector<float> x(300 * 16);
    std::vector<int64_t> y(300);
    hid_t ds = H5Dopen2(in, "x", H5P_DEFAULT);
    H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x.data());
    H5Dclose(ds);
    ds = H5Dopen2(in, "y", H5P_DEFAULT);
    H5Dread(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, y.data());
    H5Dclose(ds);
    H5Fclose(in);
    std::vector<uint8_t> y8(y.begin(), y.end());
    hid_t xf = H5Fcreate(dir.file("val_x.h5").c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    writeDataset(xf, "x", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {300, 16}, x.data());
    H5Fclose(xf);
    hid_t yf = H5Fcreate(dir.file("val_y.h5").c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    writeDataset(yf, "labels", H5T_STD_U8LE, H5T_NATIVE_UINT8, {300, 1}, y8.data());
    H5Fclose(yf);
  }
  const std::string common = "--data train.h5 --num-training 20 --batch-size 32 --min-lr 1e-4 --max-lr 1 ";
  const auto inside = sweep(dir, common + "--val-data val.h5", "inside.h5");
  const auto apart = sweep(dir, common + "--val-data val_x.h5 --val-labels val_y.h5:labels", "apart.h5");
  ASSERT_EQ(inside.val_loss.size(), 20u);
  EXPECT_EQ(apart.val_loss, inside.val_loss);
  EXPECT_EQ(inside.numbers.at("val_samples"), 300);
  EXPECT_EQ(inside.strings.at("val_data"), dir.file("val.h5").substr(dir.path().string().size() + 1));
  EXPECT_EQ(apart.strings.at("val_labels"), "val_y.h5:labels");

  const auto first_two = sweep(dir, common + "--val-data val.h5 --val-batches 2", "first_two.h5");
  const auto small = sweep(dir, common + "--val-data val64.h5", "small.h5");
  EXPECT_EQ(first_two.numbers.at("val_samples"), 64);
  EXPECT_EQ(first_two.numbers.at("val_batches"), 2);
  EXPECT_EQ(first_two.val_loss, small.val_loss);
  EXPECT_NE(first_two.val_loss, inside.val_loss);
  // Without validation data: no val_loss, and the monitor is the training loss.
  const auto plain = sweep(dir, common, "plain.h5");
  EXPECT_TRUE(plain.val_loss.empty());
  EXPECT_EQ(plain.strings.at("monitor"), "train");
  EXPECT_EQ(plain.loss_raw, inside.loss_raw) << "evaluating changes nothing in the training";
}

}  // namespace
}  // namespace lrfind
