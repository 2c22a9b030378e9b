// Data as people store it, end to end through lrfind_dist: inputs of other types and
// layouts give the curve of their float32 [N, C, H, W] equivalent, labels of other
// types, shapes and files the curve of int64 [N] labels in the same file.

#include <hdf5.h>

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

constexpr hsize_t kN = 256;

// Writes `x` (dims, stored as file_type from mem_type) and int64 labels [kN] into `path`.
void writeFile(const std::string& path, hid_t file_type, hid_t mem_type, const std::vector<hsize_t>& dims,
               const void* x, const std::vector<int64_t>* labels) {
  hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(f, 0) << path;
  writeDataset(f, "x", file_type, mem_type, dims, x);
  if (labels != nullptr) writeDataset(f, "y", H5T_STD_I64LE, H5T_NATIVE_INT64, {kN}, labels->data());
  H5Fclose(f);
}

// Labels that depend on the inputs, so that the curve is a real one: the class is which
// quarter of the range the first feature's mean falls in.
std::vector<int64_t> labelsOf(const std::vector<float>& x, std::size_t per_sample, float lo, float hi) {
  std::vector<int64_t> y(kN);
  for (hsize_t i = 0; i < kN; ++i) {
    double sum = 0;
    for (std::size_t j = 0; j < per_sample / 4; ++j) sum += x[i * per_sample + j];
    const double mean = sum / static_cast<double>(per_sample / 4);
    y[i] = std::min<int64_t>(3, std::max<int64_t>(0, static_cast<int64_t>(4 * (mean - lo) / (hi - lo))));
  }
  return y;
}

// Runs one sweep and returns its results; `extra` names the data and how to read it.
runtime::ResultsData sweep(const TempDir& dir, const std::string& extra, const std::string& out,
                           const std::string& launcher = "", int batch_size = 16) {
  const auto r = runCli(dir, "--num-training 30 --batch-size " + std::to_string(batch_size) +
                                 " --plot '' --min-lr 1e-4 --max-lr 1 --out " + out + " " + extra,
                        launcher);
  EXPECT_EQ(r.code, 0) << extra << ": " << r.err;
  if (r.code != 0) return {};
  return runtime::readResults(dir.file(out));
}

void expectSameCurve(const runtime::ResultsData& a, const runtime::ResultsData& b, double rel, const std::string& what) {
  ASSERT_FALSE(a.loss_raw.empty()) << what;
  ASSERT_EQ(a.loss_raw.size(), b.loss_raw.size()) << what;
  for (std::size_t k = 0; k < a.loss_raw.size(); ++k) {
    EXPECT_LE(std::abs(a.loss_raw[k] - b.loss_raw[k]), rel * std::abs(b.loss_raw[k])) << what << ", step " << k;
  }
  EXPECT_EQ(a.numbers.at("suggested_lr"), b.numbers.at("suggested_lr")) << what;
  EXPECT_EQ(a.suggestions, b.suggestions) << what;
}

// uint8 [N, H, W, C] with --channels-last and the default scale against float32
// [N, C, H, W] holding x / 255 (as numpy's astype('float32') / 255 computes it).
TEST(DataCli, Uint8ChannelsLastMatchesItsFloat32File) {
  TempDir dir;
  const hsize_t h = 8, w = 8, c = 3;
  std::vector<uint8_t> nhwc(kN * h * w * c);
  uint32_t state = 7;
  for (auto& p : nhwc) {
    state = state * 1664525u + 1013904223u;
    p = static_cast<uint8_t>(state >> 24);
  }
  std::vector<float> nchw(nhwc.size());
  for (hsize_t n = 0; n < kN; ++n) {
    for (hsize_t y = 0; y < h; ++y) {
      for (hsize_t x = 0; x < w; ++x) {
        for (hsize_t ch = 0; ch < c; ++ch) {
          nchw[((n * c + ch) * h + y) * w + x] = static_cast<float>(nhwc[((n * h + y) * w + x) * c + ch]) / 255.0f;
        }
      }
    }
  }
  const auto labels = labelsOf(nchw, c * h * w, 0.45f, 0.55f);
  writeFile(dir.file("u8.h5"), H5T_STD_U8LE, H5T_NATIVE_UINT8, {kN, h, w, c}, nhwc.data(), &labels);
  writeFile(dir.file("f32.h5"), H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {kN, c, h, w}, nchw.data(), &labels);
  const auto u8 = sweep(dir, "--model cnn --data u8.h5 --channels-last", "u8.out.h5");
  const auto f32 = sweep(dir, "--model cnn --data f32.h5", "f32.out.h5");
  expectSameCurve(u8, f32, 1e-6, "uint8 NHWC vs float32 NCHW");
  EXPECT_EQ(u8.strings.at("input_type"), "uint8");
  EXPECT_DOUBLE_EQ(u8.numbers.at("input_scale"), 1.0 / 255.0);
  EXPECT_EQ(u8.numbers.at("channels_last"), 1);
  EXPECT_EQ(f32.strings.at("input_type"), "float32");
  EXPECT_EQ(f32.numbers.at("input_scale"), 1.0);
  EXPECT_EQ(f32.numbers.at("channels_last"), 0);
  // The same split over two ranks reads each rank's rows and converts them there.
  const auto np2 = sweep(dir, "--model cnn --data u8.h5 --channels-last", "u8.np2.h5", mpirun(2), 8);
  ASSERT_EQ(np2.loss_raw.size(), u8.loss_raw.size());
  for (std::size_t k = 0; k < u8.loss_raw.size(); ++k) {
    EXPECT_LT(std::abs(np2.loss_raw[k] - u8.loss_raw[k]) / u8.loss_raw[k], 1e-5) << "np 2, step " << k;
  }
}

// int16 and float16 inputs against float32 files holding the same numbers (float16's
// values are exact in float32), with a scale and a normalization on both sides.
TEST(DataCli, Int16AndFloat16MatchTheirFloat32Files) {
  TempDir dir;
  const hsize_t features = 16;
  std::vector<int16_t> ints(kN * features);
  std::vector<float> as_float(ints.size());
  uint32_t state = 3;
  for (std::size_t i = 0; i < ints.size(); ++i) {
    state = state * 1664525u + 1013904223u;
    ints[i] = static_cast<int16_t>(static_cast<int32_t>(state >> 20) - 2048);  // -2048 … 2047
    as_float[i] = static_cast<float>(ints[i]);
  }
  const auto labels = labelsOf(as_float, features, -600, 600);
  writeFile(dir.file("i16.h5"), H5T_STD_I16LE, H5T_NATIVE_INT16, {kN, features}, ints.data(), &labels);
  writeFile(dir.file("i16f.h5"), H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {kN, features}, as_float.data(), &labels);
  // float16 holds every integer up to 2048 exactly; halve them for fractions.
  std::vector<float> halves(as_float.size());
  for (std::size_t i = 0; i < halves.size(); ++i) halves[i] = as_float[i] / 2.0f;
  const hid_t half = H5Tcopy(H5T_IEEE_F32LE);
  H5Tset_fields(half, 15, 10, 5, 0, 10);
  H5Tset_size(half, 2);
  H5Tset_ebias(half, 15);
  writeFile(dir.file("f16.h5"), half, H5T_NATIVE_FLOAT, {kN, features}, halves.data(), &labels);
  H5Tclose(half);
  writeFile(dir.file("f16f.h5"), H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {kN, features}, halves.data(), &labels);

  const std::string how = "--input-scale 0.002 --normalize 0.1:1.5 ";
  const auto i16 = sweep(dir, how + "--data i16.h5", "i16.out.h5");
  const auto i16f = sweep(dir, how + "--data i16f.h5", "i16f.out.h5");
  expectSameCurve(i16, i16f, 1e-6, "int16 vs float32");
  EXPECT_EQ(i16.strings.at("input_type"), "int16");
  EXPECT_EQ(i16.numbers.at("input_scale"), 0.002);
  EXPECT_EQ(i16.strings.at("normalize"), "0.1:1.5");
  const auto f16 = sweep(dir, how + "--data f16.h5", "f16.out.h5");
  const auto f16f = sweep(dir, how + "--data f16f.h5", "f16f.out.h5");
  expectSameCurve(f16, f16f, 1e-6, "float16 vs float32");
  EXPECT_EQ(f16.strings.at("input_type"), "float16");
}

// Labels [N, 1, 1, 1] uint8 in a file of their own (PatchCamelyon's layout) against int64
// [N] labels in the data file: the same curve, bit for bit.
TEST(DataCli, LabelsOfOtherShapesTypesAndFilesGiveTheSameCurve) {
  TempDir dir;
  writeClassification(dir.file("d.h5"), kN, 12, 4);
  std::vector<uint8_t> small(kN);
  for (hsize_t i = 0; i < kN; ++i) small[i] = static_cast<uint8_t>(i % 4);  // writeClassification's labels
  {
    hid_t f = H5Fcreate(dir.file("labels.h5").c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    writeDataset(f, "y", H5T_STD_U8LE, H5T_NATIVE_UINT8, {kN, 1, 1, 1}, small.data());
    writeDataset(f, "other", H5T_STD_U8LE, H5T_NATIVE_UINT8, {kN}, small.data());
    H5Fclose(f);
  }
  const auto same = sweep(dir, "--data d.h5", "same.h5");
  const auto other = sweep(dir, "--data d.h5 --labels labels.h5", "other.h5");
  ASSERT_EQ(same.loss_raw, other.loss_raw);
  EXPECT_EQ(same.suggestions, other.suggestions);
  EXPECT_EQ(other.strings.at("labels"), "labels.h5:y");
  EXPECT_EQ(same.strings.at("labels"), "");
  const auto named = sweep(dir, "--data d.h5 --labels labels.h5:other", "named.h5");
  EXPECT_EQ(named.loss_raw, same.loss_raw);
}

}  // namespace
}  // namespace lrfind
