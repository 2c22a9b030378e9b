#include "runtime/dataset.h"

#include <algorithm>
#include <fstream>
#include <limits>
#include <numeric>
#include <set>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "common/error.h"
#include "common/string.h"
#include "runtime/batches.h"
#include "test_util.h"

namespace lrfind::runtime {
namespace {

using lrfind::testing::TempDir;
using lrfind::testing::writeDataset;

// Runs loadHdf5 and returns the InputError message ("" when it loaded).
std::string loadError(const std::string& path, const std::string& x = "x", const std::string& y = "y") {
  try {
    loadHdf5(path, x, y);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

template <typename Fn>
std::string makeFile(const TempDir& dir, const std::string& name, Fn&& fill) {
  const std::string path = dir.file(name);
  hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  fill(f);
  H5Fclose(f);
  return path;
}

const std::vector<float> kX = {0, 1, 2, 3, 4, 5, 6, 7};  // 4 samples x 2 features
const std::vector<int64_t> kY = {0, 1, 2, 1};

TEST(Hdf5Dataset, ReadsFloatInputsAndIntLabels) {
  TempDir dir;
  const auto path = makeFile(dir, "ok.h5", [](hid_t f) {
    writeDataset(f, "x", H5T_IEEE_F64LE, H5T_NATIVE_FLOAT, {4, 2}, kX.data());
    const std::vector<int32_t> y32 = {0, 1, 2, 1};
    writeDataset(f, "y", H5T_STD_I32LE, H5T_NATIVE_INT32, {4}, y32.data());
  });
  const Dataset d = loadHdf5(path);
  EXPECT_EQ(d.x.scalar_type(), at::kFloat);
  EXPECT_EQ(d.y.scalar_type(), at::kLong);
  EXPECT_EQ(d.x.sizes(), (std::vector<int64_t>{4, 2}));
  EXPECT_FLOAT_EQ(d.x[3][1].item<float>(), 7.0f);
  EXPECT_EQ(d.y[2].item<int64_t>(), 2);
  EXPECT_TRUE(d.has_labels);
  EXPECT_EQ(d.numClasses(), 3);
}

TEST(Hdf5Dataset, ReadsImagesAndFloatTargetsUnderOtherKeys) {
  TempDir dir;
  const auto path = makeFile(dir, "img.h5", [](hid_t f) {
    std::vector<float> img(3 * 1 * 2 * 2, 0.5f);
    writeDataset(f, "images", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {3, 1, 2, 2}, img.data());
    std::vector<double> t = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6};
    writeDataset(f, "targets", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, {3, 2}, t.data());
  });
  const Dataset d = loadHdf5(path, "images", "targets");
  EXPECT_EQ(d.x.dim(), 4);
  EXPECT_FALSE(d.has_labels);
  EXPECT_EQ(d.y.scalar_type(), at::kFloat);
  EXPECT_EQ(d.y.sizes(), (std::vector<int64_t>{3, 2}));
}

struct BadCase {
  const char* name;
  std::function<void(hid_t)> fill;
  const char* expected;  // a piece of the message
};

TEST(Hdf5Dataset, RejectsBadFilesWithOneClearLine) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<BadCase> cases = {
      {"missing_x", [](hid_t f) { writeDataset(f, "y", H5T_STD_I64LE, H5T_NATIVE_INT64, {4}, kY.data()); },
       "dataset 'x' not found (the file has: y); name the right one with --x-key"},
      {"missing_y", [](hid_t f) { writeDataset(f, "x", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {4, 2}, kX.data()); },
       "dataset 'y' not found"},
      {"string_x",
       [](hid_t f) {
         const hid_t str = H5Tcopy(H5T_C_S1);
         H5Tset_size(str, 4);
         const char text[4 * 2 + 1] = "abcdefgh";
         writeDataset(f, "x", str, str, {4, 2}, text);
         H5Tclose(str);
         writeDataset(f, "y", H5T_STD_I64LE, H5T_NATIVE_INT64, {4}, kY.data());
       },
       "dataset 'x' holds strings; inputs must be numbers"},
      {"compound_x",
       [](hid_t f) {
         const hid_t rec = H5Tcreate(H5T_COMPOUND, sizeof(float));
         H5Tinsert(rec, "v", 0, H5T_NATIVE_FLOAT);
         writeDataset(f, "x", rec, rec, {4, 2}, kX.data());
         H5Tclose(rec);
         writeDataset(f, "y", H5T_STD_I64LE, H5T_NATIVE_INT64, {4}, kY.data());
       },
       "dataset 'x' holds a compound type of 4 bytes; inputs must be numbers"},
      {"rank1_x",
       [](hid_t f) {
         writeDataset(f, "x", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {8}, kX.data());
         writeDataset(f, "y", H5T_STD_I64LE, H5T_NATIVE_INT64, {4}, kY.data());
       },
       "must have shape [samples, features...], got [8]"},
      {"count_mismatch",
       [](hid_t f) {
         writeDataset(f, "x", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {4, 2}, kX.data());
         writeDataset(f, "y", H5T_STD_I64LE, H5T_NATIVE_INT64, {3}, kY.data());
       },
       "has 3 samples but 'x' has 4"},
      {"label_matrix",
       [](hid_t f) {
         writeDataset(f, "x", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {4, 2}, kX.data());
         writeDataset(f, "y", H5T_STD_I64LE, H5T_NATIVE_INT64, {2, 2}, kY.data());
       },
       "must have shape [samples]"},
      {"negative_label",
       [](hid_t f) {
         writeDataset(f, "x", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {4, 2}, kX.data());
         const std::vector<int64_t> y = {0, -1, 2, 1};
         writeDataset(f, "y", H5T_STD_I64LE, H5T_NATIVE_INT64, {4}, y.data());
       },
       "negative label (-1)"},
      {"nan_input",
       [nan](hid_t f) {
         std::vector<float> x = kX;
         x[5] = nan;
         writeDataset(f, "x", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {4, 2}, x.data());
         writeDataset(f, "y", H5T_STD_I64LE, H5T_NATIVE_INT64, {4}, kY.data());
       },
       "holds NaN or Inf (first at sample 2)"},
      {"inf_target",
       [](hid_t f) {
         writeDataset(f, "x", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {4, 2}, kX.data());
         const std::vector<float> y = {0, 1, std::numeric_limits<float>::infinity(), 1};
         writeDataset(f, "y", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {4}, y.data());
       },
       "dataset 'y' holds NaN or Inf"},
      {"group_x",
       [](hid_t f) {
         // As h5py writes f.create_group('x') and x['pixels'] = ...: a group where the
         // inputs should be. Bad input (exit code 2), not an I/O failure.
         const hid_t g = H5Gcreate2(f, "x", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
         writeDataset(g, "pixels", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {4, 2}, kX.data());
         H5Gclose(g);
         writeDataset(f, "y", H5T_STD_I64LE, H5T_NATIVE_INT64, {4}, kY.data());
       },
       "'x' is a group, not a dataset (it holds: pixels); name a dataset with --x-key, e.g. --x-key x/pixels"},
      {"group_y",
       [](hid_t f) {
         writeDataset(f, "x", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {4, 2}, kX.data());
         H5Gclose(H5Gcreate2(f, "y", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
       },
       "'y' is a group, not a dataset (it holds: nothing); name a dataset with --y-key"},
      {"dangling_x",
       [](hid_t f) {
         H5Lcreate_soft("/nowhere", f, "x", H5P_DEFAULT, H5P_DEFAULT);
         writeDataset(f, "y", H5T_STD_I64LE, H5T_NATIVE_INT64, {4}, kY.data());
       },
       "'x' cannot be opened ("},
      {"string_labels",
       [](hid_t f) {
         writeDataset(f, "x", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {4, 2}, kX.data());
         const hid_t str = H5Tcopy(H5T_C_S1);
         H5Tset_size(str, 2);
         writeDataset(f, "y", str, str, {4}, "a\0b\0c\0d");
         H5Tclose(str);
       },
       "dataset 'y' must be integer or bool class labels, or float targets, got strings"},
  };
  TempDir dir;
  for (const auto& c : cases) {
    const auto path = makeFile(dir, std::string(c.name) + ".h5", c.fill);
    const std::string msg = loadError(path);
    EXPECT_NE(msg.find(c.expected), std::string::npos) << c.name << ": got \"" << msg << "\"";
    EXPECT_NE(msg.find(path), std::string::npos) << c.name << ": the message must name the file";
    EXPECT_EQ(msg.find('\n'), std::string::npos) << c.name << ": one line";
  }
}

TEST(Hdf5Dataset, RejectsMissingTruncatedAndForeignFiles) {
  TempDir dir;
  EXPECT_NE(loadError(dir.file("nope.h5")).find("no such file"), std::string::npos);
  EXPECT_NE(loadError(dir.path().string()).find("is a directory"), std::string::npos);
  const auto text = dir.file("text.h5");
  std::ofstream(text) << "x,y\n1,2\n";
  EXPECT_NE(loadError(text).find("not an HDF5 file"), std::string::npos);
  // Truncate a real file to half its size.
  const auto good = dir.file("good.h5");
  lrfind::testing::writeClassification(good, 512, 16, 4);
  const auto size = std::filesystem::file_size(good);
  const auto cut = dir.file("cut.h5");
  std::filesystem::copy_file(good, cut);
  std::filesystem::resize_file(cut, size / 2);
  EXPECT_NE(loadError(cut), "") << "a truncated file must not load";
  EXPECT_EQ(loadError(good), "");
}

TEST(Hdf5Dataset, ReadsOnlyThePlannedRows) {
  TempDir dir;
  lrfind::testing::writeClassification(dir.file("d.h5"), 50, 3, 5);
  const Dataset all = loadHdf5(dir.file("d.h5"));
  int64_t asked_for = -1;
  const std::vector<int64_t> rows = {0, 1, 2, 7, 20, 21, 49};  // runs of 3, 1, 2, 1
  const Dataset part = loadHdf5(dir.file("d.h5"), "x", "y", [&](int64_t samples) {
    asked_for = samples;
    return rows;
  });
  EXPECT_EQ(asked_for, 50);
  EXPECT_EQ(part.size(), 7);
  EXPECT_EQ(part.totalSamples(), 50);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(part.localRow(rows[i]), static_cast<int64_t>(i));
    EXPECT_TRUE(at::equal(part.x[static_cast<int64_t>(i)], all.x[rows[i]])) << rows[i];
    EXPECT_EQ(part.y[static_cast<int64_t>(i)].item<int64_t>(), all.y[rows[i]].item<int64_t>());
  }
  EXPECT_THROW(part.localRow(3), Error);
}

// IEEE half precision, as h5py writes numpy's float16 (caller closes it).
hid_t halfType() {
  const hid_t half = H5Tcopy(H5T_IEEE_F32LE);
  H5Tset_fields(half, 15, 10, 5, 0, 10);
  H5Tset_size(half, 2);
  H5Tset_ebias(half, 15);
  return half;
}

// h5py's bool: an enum {FALSE = 0, TRUE = 1} over int8 (caller closes it).
hid_t boolType() {
  const hid_t b = H5Tenum_create(H5T_NATIVE_INT8);
  int8_t v = 0;
  H5Tenum_insert(b, "FALSE", &v);
  v = 1;
  H5Tenum_insert(b, "TRUE", &v);
  return b;
}

Dataset load(const DataSource& src, const RowPlan& plan = {}) { return loadHdf5(src, plan); }

std::string loadError(const DataSource& src) {
  try {
    loadHdf5(src);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

// Every stored type against the float32 the model must get: the values as numbers,
// times the type's default scale (1/255 for uint8 only). Signed types hold negatives;
// float16 holds values it represents exactly.
TEST(Hdf5Dataset, EveryNumericTypeIsHeldAsStoredAndBecomesItsFloat32) {
  struct TypeCase {
    const char* name;
    hid_t file_type;
    bool is_signed;
    at::ScalarType held;
  };
  const hid_t half = halfType();
  const std::vector<TypeCase> cases = {
      {"uint8", H5T_STD_U8LE, false, at::kByte},    {"int8", H5T_STD_I8LE, true, at::kChar},
      {"uint16", H5T_STD_U16LE, false, at::kInt},   {"int16", H5T_STD_I16BE, true, at::kShort},
      {"int32", H5T_STD_I32LE, true, at::kInt},     {"uint32", H5T_STD_U32LE, false, at::kLong},
      {"int64", H5T_STD_I64LE, true, at::kLong},    {"uint64", H5T_STD_U64LE, false, at::kDouble},
      {"float16", half, true, at::kHalf},           {"float32", H5T_IEEE_F32BE, true, at::kFloat},
      {"float64", H5T_IEEE_F64LE, true, at::kFloat},
  };
  TempDir dir;
  const std::vector<hsize_t> dims = {6, 2, 3};
  for (const auto& c : cases) {
    std::vector<double> v(36);
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<double>(i * 7 % 100) - (c.is_signed ? 40 : 0);
    const auto path = makeFile(dir, std::string(c.name) + ".h5", [&](hid_t f) {
      writeDataset(f, "x", c.file_type, H5T_NATIVE_DOUBLE, dims, v.data());
      const std::vector<int64_t> y = {0, 1, 2, 1, 0, 1};
      writeDataset(f, "y", H5T_STD_I64LE, H5T_NATIVE_INT64, {6}, y.data());
    });
    const Dataset d = loadHdf5(path);
    EXPECT_EQ(d.input_type, c.name);
    EXPECT_EQ(d.stored.scalar_type(), c.held) << c.name;
    EXPECT_EQ(d.stored.sizes(), (std::vector<int64_t>{6, 2, 3})) << c.name;
    const bool pixels = std::string(c.name) == "uint8";
    EXPECT_EQ(d.transform.scale, pixels ? 1.0 / 255.0 : 1.0) << c.name;
    // The float32 an equivalent float file holds: x / 255 in float32 for uint8.
    std::vector<float> expected(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) {
      expected[i] = pixels ? static_cast<float>(v[i]) / 255.0f : static_cast<float>(v[i]);
    }
    const at::Tensor want = at::from_blob(expected.data(), {6, 2, 3}, at::kFloat);
    const at::Tensor got = modelInputs(d.stored, d.transform);
    EXPECT_EQ(got.scalar_type(), at::kFloat);
    EXPECT_TRUE(at::equal(got, want)) << c.name << "\n" << got << "\n" << want;
    EXPECT_TRUE(at::equal(d.x, want.narrow(0, 0, d.x.size(0)))) << c.name << ": the model's view";
    // The batches the sweep takes: the same rows, converted.
    BatchPlan plan;
    plan.batch_size = 3;
    plan.shuffle = false;
    ShardedBatches batches(d, plan, c10::Device(c10::DeviceType::CPU));
    EXPECT_TRUE(at::equal(batches.next().input, want.narrow(0, 0, 3))) << c.name;
  }
  H5Tclose(half);
}

TEST(Hdf5Dataset, ScaleOverridesTheDefaultAndFloat32IsNotCopied) {
  TempDir dir;
  const auto path = makeFile(dir, "f.h5", [](hid_t f) {
    writeDataset(f, "x", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {4, 2}, kX.data());
    writeDataset(f, "y", H5T_STD_I64LE, H5T_NATIVE_INT64, {4}, kY.data());
  });
  DataSource src;
  src.path = path;
  const Dataset plain = load(src);
  EXPECT_TRUE(plain.x.is_same(plain.stored)) << "float32 as the model takes it: one copy in memory";
  EXPECT_TRUE(modelInputs(plain.stored, plain.transform).is_same(plain.stored));
  src.input_scale = 0.5;
  const Dataset half = load(src);
  EXPECT_EQ(half.transform.scale, 0.5);
  EXPECT_FLOAT_EQ(modelInputs(half.stored, half.transform)[3][1].item<float>(), 3.5f);
  EXPECT_FLOAT_EQ(half.stored[3][1].item<float>(), 7.0f) << "the held rows stay as read";
}

// uint8 [N, H, W, C] with --channels-last and --normalize: the model gets
// ((x / 255) - mean[c]) / std[c] in [N, C, H, W].
TEST(Hdf5Dataset, ChannelsLastPermutesAndNormalizesTheLastAxis) {
  TempDir dir;
  std::vector<uint8_t> pixels(2 * 2 * 2 * 3);
  for (std::size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(i * 11);
  const auto path = makeFile(dir, "nhwc.h5", [&](hid_t f) {
    writeDataset(f, "x", H5T_STD_U8LE, H5T_NATIVE_UINT8, {2, 2, 2, 3}, pixels.data());
    const std::vector<int64_t> y = {0, 1};
    writeDataset(f, "y", H5T_STD_I64LE, H5T_NATIVE_INT64, {2}, y.data());
  });
  DataSource src;
  src.path = path;
  src.channels_last = true;
  src.mean = {0.5, 0.4, 0.3};
  src.std = {0.2, 0.25, 0.5};
  const Dataset d = load(src);
  EXPECT_EQ(d.stored.sizes(), (std::vector<int64_t>{2, 2, 2, 3})) << "held as stored";
  const at::Tensor got = modelInputs(d.stored, d.transform);
  ASSERT_EQ(got.sizes(), (std::vector<int64_t>{2, 3, 2, 2}));
  EXPECT_TRUE(got.is_contiguous());
  for (int n = 0; n < 2; ++n) {
    for (int h = 0; h < 2; ++h) {
      for (int w = 0; w < 2; ++w) {
        for (int c = 0; c < 3; ++c) {
          const float x = static_cast<float>(pixels[((n * 2 + h) * 2 + w) * 3 + c]) / 255.0f;
          const double want = (x - src.mean[c]) / src.std[c];
          EXPECT_NEAR(got[n][c][h][w].item<float>(), want, 1e-6) << n << h << w << c;
        }
      }
    }
  }
  EXPECT_EQ(d.x.sizes(), (std::vector<int64_t>{2, 3, 2, 2})) << "built-in models size themselves from x";
  // One value for every channel.
  src.mean = {0.5};
  src.std = {0.5};
  const at::Tensor one = modelInputs(load(src).stored, load(src).transform);
  EXPECT_NEAR(one[1][2][1][1].item<float>(), (pixels.back() / 255.0f - 0.5f) / 0.5f, 1e-6);
}

TEST(Hdf5Dataset, RefusesTransformsThatDoNotFitTheShape) {
  TempDir dir;
  std::vector<float> img(4 * 5 * 5 * 3, 0.5f);
  const auto path = makeFile(dir, "img.h5", [&](hid_t f) {
    writeDataset(f, "x", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {4, 5, 5, 3}, img.data());
    writeDataset(f, "flat", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {4, 2}, kX.data());
    writeDataset(f, "gray", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {4, 5, 15}, img.data());
    writeDataset(f, "y", H5T_STD_I64LE, H5T_NATIVE_INT64, {4}, kY.data());
  });
  DataSource src;
  src.path = path;
  src.channels_last = true;
  src.mean = {0.5, 0.5};
  src.std = {0.2, 0.2};
  std::string msg = loadError(src);
  EXPECT_NE(msg.find("--normalize gives 2 means but --data " + path + ": dataset 'x' [4, 5, 5, 3] has 3 channels"),
            std::string::npos)
      << msg;
  src.channels_last = false;  // axis 1: 5 channels
  msg = loadError(src);
  EXPECT_NE(msg.find("has 5 channels (axis 1)"), std::string::npos) << msg;
  src.x_key = "gray";  // [N, H, W]: one channel
  msg = loadError(src);
  EXPECT_NE(msg.find("dataset 'gray' [4, 5, 15] has 1 channel (one channel"), std::string::npos) << msg;
  src.mean = {0.5};
  src.std = {0.2, 0.3};
  msg = loadError(src);
  EXPECT_NE(msg.find("--normalize gives 2 stds"), std::string::npos) << msg;
  src = DataSource{};
  src.path = path;
  src.x_key = "flat";
  src.channels_last = true;
  msg = loadError(src);
  EXPECT_NE(msg.find("--channels-last needs image inputs [samples, H, W, C], but --data " + path +
                     ": dataset 'flat' has shape [4, 2]"),
            std::string::npos)
      << msg;
}

// Labels of every integer type and bool, with trailing size-1 axes, all the same int64
// labels; float targets [N, 1] keep their shape.
TEST(Hdf5Dataset, LabelsOfAnyIntegerTypeAndShape) {
  TempDir dir;
  const std::vector<int64_t> labels = {0, 1, 1, 0};
  const hid_t boolean = boolType();
  struct LabelCase {
    const char* name;
    hid_t file_type;
    hid_t mem_type;
    std::vector<hsize_t> dims;
  };
  const std::vector<LabelCase> cases = {
      {"uint8_n111", H5T_STD_U8LE, H5T_NATIVE_INT64, {4, 1, 1, 1}}, {"int16_n1", H5T_STD_I16BE, H5T_NATIVE_INT64, {4, 1}},
      {"uint64", H5T_STD_U64LE, H5T_NATIVE_INT64, {4}},            {"int8", H5T_STD_I8LE, H5T_NATIVE_INT64, {4}},
      {"bool", boolean, boolean, {4, 1}},
  };
  for (const auto& c : cases) {
    const std::vector<int8_t> small(labels.begin(), labels.end());
    const auto path = makeFile(dir, std::string(c.name) + ".h5", [&](hid_t f) {
      writeDataset(f, "x", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {4, 2}, kX.data());
      writeDataset(f, "y", c.file_type, c.mem_type, c.dims,
                   c.mem_type == boolean ? static_cast<const void*>(small.data()) : labels.data());
    });
    const Dataset d = loadHdf5(path);
    EXPECT_TRUE(d.has_labels) << c.name;
    EXPECT_EQ(d.y.scalar_type(), at::kLong) << c.name;
    EXPECT_EQ(d.y.sizes(), (std::vector<int64_t>{4})) << c.name;
    EXPECT_TRUE(at::equal(d.y, at::tensor(labels))) << c.name << ": " << d.y;
  }
  H5Tclose(boolean);
  const auto path = makeFile(dir, "targets.h5", [&](hid_t f) {
    writeDataset(f, "x", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {4, 2}, kX.data());
    writeDataset(f, "y", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {4, 1}, kX.data());
  });
  const Dataset d = loadHdf5(path);
  EXPECT_FALSE(d.has_labels);
  EXPECT_EQ(d.y.sizes(), (std::vector<int64_t>{4, 1}));
}

// PatchCamelyon's layout: the labels in a file of their own.
TEST(Hdf5Dataset, LabelsFromAnotherFile) {
  TempDir dir;
  const auto data = makeFile(dir, "x.h5", [](hid_t f) {
    writeDataset(f, "x", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {4, 2}, kX.data());
  });
  const auto labels = makeFile(dir, "labels.h5", [](hid_t f) {
    writeDataset(f, "y", H5T_STD_U8LE, H5T_NATIVE_INT64, {4, 1, 1, 1}, kY.data());
    writeDataset(f, "short", H5T_STD_I64LE, H5T_NATIVE_INT64, {3}, kY.data());
  });
  DataSource src;
  src.path = data;
  src.labels_path = labels;
  const Dataset d = load(src, [](int64_t) { return std::vector<int64_t>{1, 3}; });
  EXPECT_EQ(d.labels_source, labels + ":y");
  EXPECT_EQ(d.y.sizes(), (std::vector<int64_t>{2}));
  EXPECT_EQ(d.y[0].item<int64_t>(), 1);
  EXPECT_EQ(d.y[1].item<int64_t>(), 1);
  src.labels_key = "short";
  std::string msg = loadError(src);
  EXPECT_NE(msg.find("--labels " + labels + ": dataset 'short' has 3 samples but --data " + data +
                     ": dataset 'x' has 4; they must agree"),
            std::string::npos)
      << msg;
  src.labels_key = "nope";
  msg = loadError(src);
  EXPECT_NE(msg.find("--labels " + labels + ": dataset 'nope' not found (the file has: short, y)"), std::string::npos)
      << msg;
  src.labels_key.clear();
  src.labels_path = dir.file("missing.h5");
  EXPECT_NE(loadError(src).find("--labels " + dir.file("missing.h5") + ": no such file"), std::string::npos);
  // The data file alone has no 'y': the message says where the labels could come from.
  EXPECT_NE(loadError(data).find("dataset 'y' not found (the file has: x)"), std::string::npos);
}

TEST(Hdf5Dataset, LabelsArgumentSplitsAtTheLastColon) {
  TempDir dir;
  EXPECT_EQ(splitLabelsArgument("l.h5"), (std::pair<std::string, std::string>{"l.h5", ""}));
  EXPECT_EQ(splitLabelsArgument("l.h5:labels/y"), (std::pair<std::string, std::string>{"l.h5", "labels/y"}));
  const std::string odd = dir.file("a:b.h5");
  std::ofstream(odd) << "x";
  EXPECT_EQ(splitLabelsArgument(odd), (std::pair<std::string, std::string>{odd, ""}));
}

// The same rows with the same values from gzip files of several chunk shapes (h5py's
// guess among them), in pieces of a few bands or one.
TEST(Hdf5Dataset, CompressedChunkShapesReadTheSameRows) {
  TempDir dir;
  const std::vector<hsize_t> dims = {300, 3, 4, 5};
  std::vector<float> values(300 * 3 * 4 * 5);
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i % 1009) * 0.25f;
  std::vector<int64_t> y(300);
  for (std::size_t i = 0; i < y.size(); ++i) y[i] = static_cast<int64_t>(i % 7);
  const std::vector<std::vector<hsize_t>> chunks = {{1, 3, 4, 5}, {19, 1, 2, 5}, {64, 3, 4, 5}, {300, 3, 4, 5},
                                                    {7, 2, 3, 4}};
  BatchPlan plan;
  plan.batch_size = 10;
  plan.world = 2;
  plan.rank = 1;
  plan.seed = 5;
  const auto rows = rowsUsed(300, plan, 6, "test");
  auto expectRows = [&](const Dataset& d, const std::string& what) {
    ASSERT_EQ(d.size(), static_cast<int64_t>(rows.size())) << what;
    const at::Tensor all = at::from_blob(values.data(), {300, 3, 4, 5}, at::kFloat);
    const at::Tensor index = at::tensor(rows);
    EXPECT_TRUE(at::equal(d.stored, all.index_select(0, index))) << what;
    EXPECT_TRUE(at::equal(d.y, at::tensor(y).index_select(0, index))) << what;
  };
  for (const auto& chunk : chunks) {
    const std::string name = concat("c", chunk[0], "_", chunk[1], "_", chunk[2], "_", chunk[3], ".h5");
    const auto path = makeFile(dir, name, [&](hid_t f) {
      const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
      H5Pset_chunk(dcpl, 4, chunk.data());
      if (chunk[0] % 2 == 1) H5Pset_shuffle(dcpl);
      H5Pset_deflate(dcpl, 4);
      const hid_t space = H5Screate_simple(4, dims.data(), nullptr);
      const hid_t ds = H5Dcreate2(f, "x", H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
      ASSERT_GE(H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()), 0);
      H5Dclose(ds);
      H5Sclose(space);
      H5Pclose(dcpl);
      writeDataset(f, "y", H5T_STD_I64LE, H5T_NATIVE_INT64, {300}, y.data());
    });
    for (const int64_t piece : {int64_t{1}, int64_t{20000}, int64_t{64} << 20}) {
      DataSource src;
      src.path = path;
      src.piece_bytes = piece;
      std::vector<std::pair<int64_t, int64_t>> calls;
      src.progress = [&](int64_t done, int64_t total) { calls.emplace_back(done, total); };
      expectRows(load(src, [&](int64_t) { return rows; }), concat(name, " pieces of ", piece));
      ASSERT_FALSE(calls.empty());
      EXPECT_EQ(calls.back(), (std::pair<int64_t, int64_t>{static_cast<int64_t>(rows.size()),
                                                           static_cast<int64_t>(rows.size())}));
      if (piece == 1 && chunk[0] < 300) {
        EXPECT_GT(calls.size(), 1u) << name << ": a piece per band";
      }
    }
  }
}

// More runs of rows than one selection takes (512): every other row of 3000, from a
// contiguous and a gzip file, in one piece and in many.
TEST(Hdf5Dataset, ManyRunsOfRowsReadInSeveralSelections) {
  TempDir dir;
  const hsize_t n = 3000;
  std::vector<float> values(n * 4);
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i);
  std::vector<int64_t> y(n, 1);
  std::vector<int64_t> rows;
  for (int64_t r = 0; r < static_cast<int64_t>(n); r += 2) rows.push_back(r);
  for (const bool gzip : {false, true}) {
    const auto path = makeFile(dir, gzip ? "gzip.h5" : "plain.h5", [&](hid_t f) {
      const hsize_t dims[2] = {n, 4}, chunk[2] = {700, 2};
      const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
      if (gzip) {
        H5Pset_chunk(dcpl, 2, chunk);
        H5Pset_deflate(dcpl, 4);
      }
      const hid_t space = H5Screate_simple(2, dims, nullptr);
      const hid_t ds = H5Dcreate2(f, "x", H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
      ASSERT_GE(H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()), 0);
      H5Dclose(ds);
      H5Sclose(space);
      H5Pclose(dcpl);
      writeDataset(f, "y", H5T_STD_I64LE, H5T_NATIVE_INT64, {n}, y.data());
    });
    for (const int64_t piece : {int64_t{1}, int64_t{64} << 20}) {
      DataSource src;
      src.path = path;
      src.piece_bytes = piece;
      const Dataset d = load(src, [&](int64_t) { return rows; });
      const at::Tensor all = at::from_blob(values.data(), {static_cast<int64_t>(n), 4}, at::kFloat);
      EXPECT_TRUE(at::equal(d.stored, all.index_select(0, at::tensor(rows)))) << path << ", pieces of " << piece;
    }
  }
}

TEST(Hdf5Dataset, MissingKeyListsDatasetsAtEveryDepth) {
  TempDir dir;
  const auto path = makeFile(dir, "nested.h5", [](hid_t f) {
    const hid_t g = H5Gcreate2(f, "train", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    const hid_t inner = H5Gcreate2(g, "inputs", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    writeDataset(inner, "images", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {4, 2}, kX.data());
    writeDataset(g, "labels", H5T_STD_I64LE, H5T_NATIVE_INT64, {4}, kY.data());
    H5Gclose(inner);
    H5Gclose(g);
    for (int i = 0; i < 30; ++i) {
      writeDataset(f, concat("extra", i < 10 ? "0" : "", i).c_str(), H5T_STD_I64LE, H5T_NATIVE_INT64, {4}, kY.data());
    }
  });
  const std::string msg = loadError(path);
  EXPECT_NE(msg.find("dataset 'x' not found (the file has: extra00, extra01"), std::string::npos) << msg;
  EXPECT_NE(msg.find(", extra19 and more); name the right one with --x-key"), std::string::npos)
      << msg << ": 20 names, then that there are more";
  const auto small = makeFile(dir, "small.h5", [](hid_t f) {
    const hid_t g = H5Gcreate2(f, "train", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    writeDataset(g, "images", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {4, 2}, kX.data());
    H5Gclose(g);
  });
  EXPECT_NE(loadError(small).find("(the file has: train/images)"), std::string::npos) << loadError(small);
}

// A filter this HDF5 lacks (lzf is h5py's own; tests/cli/bad_input_test.cpp reads a
// real lzf file when h5py is there): exit code 2 and how to rewrite the file.
TEST(Hdf5Dataset, FilterThisHdf5LacksIsNamedWithTheFix) {
  TempDir dir;
  ASSERT_LE(H5Zfilter_avail(32000), 0) << "this HDF5 has lzf; the test needs a filter it lacks";
  const auto path = makeFile(dir, "lzf.h5", [](hid_t f) {
    const hsize_t dims[2] = {4, 2}, chunk[2] = {2, 2};
    const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 2, chunk);
    // Optional: HDF5 creates the dataset without the filter's code.
    H5Pset_filter(dcpl, 32000, H5Z_FLAG_OPTIONAL, 0, nullptr);
    const hid_t space = H5Screate_simple(2, dims, nullptr);
    const hid_t ds = H5Dcreate2(f, "x", H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (ds >= 0) {
      H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, kX.data());
      H5Dclose(ds);
    }
    H5Sclose(space);
    H5Pclose(dcpl);
    writeDataset(f, "y", H5T_STD_I64LE, H5T_NATIVE_INT64, {4}, kY.data());
  });
  const std::string msg = loadError(path);
  if (msg.find("not found") != std::string::npos) GTEST_SKIP() << "this HDF5 cannot create the dataset: " << msg;
  EXPECT_NE(msg.find("--data " + path + ": dataset 'x' is compressed with the lzf filter (id 32000), which this HDF5 "
                     "cannot decode; rewrite the file with gzip: h5repack -f GZIP=4 in.h5 out.h5"),
            std::string::npos)
      << msg;
}

TEST(Hdf5Dataset, LabelOutOfRangeNamesTheFirstSample) {
  TempDir dir;
  const std::vector<int64_t> y = {0, 1, 5, 1, 7, 0};
  const std::vector<float> x(12, 0.5f);
  const auto path = makeFile(dir, "big_labels.h5", [&](hid_t f) {
    writeDataset(f, "x", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {6, 2}, x.data());
    writeDataset(f, "y", H5T_STD_I64LE, H5T_NATIVE_INT64, {6}, y.data());
  });
  const Dataset part = loadHdf5(path, "x", "y", [](int64_t) { return std::vector<int64_t>{1, 2, 4}; });
  try {
    checkLabelsFit(part, 3, "cnn");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("label 7 is out of range for --model cnn, which has 3 outputs; labels must "
                                         "be 0 … 2 (the first out of range: 5 at sample 2)"),
              std::string::npos)
        << e.what();
  }
}

TEST(Batches, RowsUsedAreExactlyWhatTheBatchesTouch) {
  BatchPlan plan;
  plan.batch_size = 4;
  plan.rank = 1;
  plan.world = 3;
  plan.seed = 11;
  const auto rows = rowsUsed(1000, plan, 5, "test");
  BatchIndexer indexer(1000, plan, "test");
  std::set<int64_t> touched;
  for (int b = 0; b < 5; ++b) {
    for (int64_t i : indexer.peek()) touched.insert(i);
    indexer.advance();
  }
  EXPECT_EQ(rows, std::vector<int64_t>(touched.begin(), touched.end()));
  EXPECT_EQ(rows.size(), 20u);  // 5 batches of 4 distinct samples in one epoch
}

TEST(Hdf5Dataset, LabelsMustFitTheModel) {
  TempDir dir;
  const auto path = makeFile(dir, "ok.h5", [](hid_t f) {
    writeDataset(f, "x", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {4, 2}, kX.data());
    writeDataset(f, "y", H5T_STD_I64LE, H5T_NATIVE_INT64, {4}, kY.data());
  });
  const Dataset d = loadHdf5(path);
  EXPECT_NO_THROW(checkLabelsFit(d, 3, "m.pt"));
  try {
    checkLabelsFit(d, 2, "m.pt");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("label 2 is out of range for --model m.pt, which has 2 outputs"),
              std::string::npos)
        << e.what();
  }
}

TEST(Synthetic, SameSeedSameBitsOtherSeedOtherData) {
  const Dataset a = makeSynthetic(7), b = makeSynthetic(7), c = makeSynthetic(8);
  EXPECT_TRUE(at::equal(a.x, b.x));
  EXPECT_TRUE(at::equal(a.y, b.y));
  EXPECT_FALSE(at::equal(a.x, c.x));
  EXPECT_EQ(a.numClasses(), 10);
}

TEST(Batches, CycleInFileOrderWithoutShuffle) {
  Dataset d = makeSynthetic(0, SyntheticSpec{10, 2, 2});
  BatchPlan plan;
  plan.batch_size = 4;
  plan.shuffle = false;
  ShardedBatches b(d, plan, c10::Device(c10::DeviceType::CPU));
  EXPECT_EQ(b.peekIndices(), (std::vector<int64_t>{0, 1, 2, 3}));
  b.next();
  b.next();
  EXPECT_EQ(b.peekIndices(), (std::vector<int64_t>{8, 9, 0, 1}));  // wraps into the next epoch
  const auto batch = b.next();
  EXPECT_TRUE(at::equal(batch.input[2], d.x[0]));
}

TEST(Batches, StrideShardsAddUpToTheSingleProcessStream) {
  Dataset d = makeSynthetic(0, SyntheticSpec{50, 2, 2});
  for (bool shuffle : {false, true}) {
    BatchPlan one;
    one.batch_size = 8;
    one.shuffle = shuffle;
    one.seed = 3;
    ShardedBatches whole(d, one, c10::Device(c10::DeviceType::CPU));
    std::vector<ShardedBatches> shards;
    for (int r = 0; r < 4; ++r) {
      BatchPlan p = one;
      p.batch_size = 2;
      p.rank = r;
      p.world = 4;
      shards.emplace_back(d, p, c10::Device(c10::DeviceType::CPU));
    }
    for (int step = 0; step < 20; ++step) {  // 160 samples: crosses three epochs
      const auto all = whole.peekIndices();
      whole.next();
      for (int r = 0; r < 4; ++r) {
        const auto mine = shards[r].peekIndices();
        shards[r].next();
        // rank r holds positions r and r + 4 of the global batch.
        EXPECT_EQ(mine, (std::vector<int64_t>{all[r], all[r + 4]})) << "step " << step << " rank " << r;
      }
    }
  }
}

TEST(Batches, HeldOutRowsAreNeverInATrainingBatchAndEachIsEvaluatedOnce) {
  // 103 rows, --val-fraction 0.2: ceil(20.6) = 21 held out, rows 82 ... 102.
  Dataset d = makeSynthetic(0, SyntheticSpec{103, 2, 2});
  const int64_t held = heldOutRows(103, 0.2);
  ASSERT_EQ(held, 21);
  EXPECT_EQ(heldOutRows(400, 0.25), 100) << "an exact product is not rounded up";
  EXPECT_EQ(heldOutRows(10, 0.0), 0);
  const int64_t train = 103 - held;
  std::vector<int64_t> evaluated;
  for (int r = 0; r < 3; ++r) {
    BatchPlan p;
    p.batch_size = 5;
    p.rank = r;
    p.world = 3;
    p.seed = 9;
    ShardedBatches batches(d, p, c10::Device(c10::DeviceType::CPU), train);
    std::set<int64_t> trained;
    for (int step = 0; step < 60; ++step) {  // 900 samples over 3 ranks: about 11 epochs
      for (int64_t i : batches.peekIndices()) trained.insert(i);
      batches.next();
    }
    EXPECT_LT(*trained.rbegin(), train) << "rank " << r << " trained on a held-out row";
    EXPECT_EQ(*trained.begin(), 0);
    const auto rows = evalRows(train, held, r, 3);
    EvalBatches eval(d, rows, 4, c10::Device(c10::DeviceType::CPU));
    EXPECT_EQ(eval.numBatches(), (static_cast<int64_t>(rows.size()) + 3) / 4);
    for (int64_t b = 0; b < eval.numBatches(); ++b) {
      const auto batch = eval.batch(b);
      for (int64_t j = 0; j < batch.input.size(0); ++j) {
        const int64_t row = rows[static_cast<std::size_t>(b * 4 + j)];
        EXPECT_TRUE(at::equal(batch.input[j], d.x[row])) << "row " << row;
      }
    }
    evaluated.insert(evaluated.end(), rows.begin(), rows.end());
  }
  std::sort(evaluated.begin(), evaluated.end());
  std::vector<int64_t> expected(static_cast<std::size_t>(held));
  std::iota(expected.begin(), expected.end(), train);
  EXPECT_EQ(evaluated, expected) << "the ranks' shares are the held-out rows, each once";
}

TEST(Batches, ShuffleIsASeededPermutationPerEpoch) {
  const auto p0 = epochPermutation(100, 5, 0);
  auto sorted = p0;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 100; ++i) EXPECT_EQ(sorted[i], i);
  EXPECT_EQ(p0, epochPermutation(100, 5, 0));
  EXPECT_NE(p0, epochPermutation(100, 5, 1));
  EXPECT_NE(p0, epochPermutation(100, 6, 0));
}

TEST(Batches, FewerSamplesThanOneGlobalBatchIsAnError) {
  Dataset d = makeSynthetic(0, SyntheticSpec{10, 2, 2});
  BatchPlan plan;
  plan.batch_size = 4;
  plan.world = 3;
  try {
    ShardedBatches b(d, plan, c10::Device(c10::DeviceType::CPU));
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("fewer than one global batch (3 rank(s) x --batch-size 4 = 12)"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace lrfind::runtime
