#include "runtime/dataset.h"

#include <fstream>
#include <limits>
#include <set>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "common/error.h"
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
      {"int_x",
       [](hid_t f) {
         writeDataset(f, "x", H5T_STD_I64LE, H5T_NATIVE_INT64, {4}, kY.data());
         writeDataset(f, "y", H5T_STD_I64LE, H5T_NATIVE_INT64, {4}, kY.data());
       },
       "must be float32 or float64, got int64"},
      {"float16_x",
       [](hid_t f) {
         // IEEE half precision, as h5py writes numpy's float16.
         const hid_t half = H5Tcopy(H5T_IEEE_F32LE);
         H5Tset_fields(half, 15, 10, 5, 0, 10);
         H5Tset_size(half, 2);
         H5Tset_ebias(half, 15);
         writeDataset(f, "x", half, H5T_NATIVE_FLOAT, {4, 2}, kX.data());
         H5Tclose(half);
         writeDataset(f, "y", H5T_STD_I64LE, H5T_NATIVE_INT64, {4}, kY.data());
       },
       "must be float32 or float64, got float16;"},
      {"uint8_y",
       [](hid_t f) {
         writeDataset(f, "x", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {4, 2}, kX.data());
         writeDataset(f, "y", H5T_STD_U8LE, H5T_NATIVE_INT64, {4}, kY.data());
       },
       "int32/int64 class labels or float32/float64 targets, got uint8"},
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
      {"uint8_labels",
       [](hid_t f) {
         writeDataset(f, "x", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {4, 2}, kX.data());
         const std::vector<uint8_t> y = {0, 1, 2, 1};
         writeDataset(f, "y", H5T_STD_U8LE, H5T_NATIVE_UINT8, {4}, y.data());
       },
       "must be int32/int64 class labels or float32/float64 targets"},
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
