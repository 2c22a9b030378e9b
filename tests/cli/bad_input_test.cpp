// Bad input, end to end: every case gets exit code 2 and one line on stderr that names
// the flag, file or dataset, and no results file is created or changed. The same table
// runs under one process and under mpirun -np 2, where every rank must be gone within
// 10 s.

#include <hdf5.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <vector>

#include <gtest/gtest.h>
#include <torch/cuda.h>

#include "cli_util.h"

namespace lrfind {
namespace {

using namespace lrfind::testing;

struct BadCase {
  std::string args;
  std::string expected;  // a piece of the one error line
};

// A float32 x [n, 8] and y of the given type; `poison` goes into x[3][2].
void writeData(const std::string& path, hid_t y_file_type, hid_t y_mem_type, const void* y, float poison = 0.0f) {
  const hsize_t n = 100;
  std::vector<float> x(n * 8, 0.5f);
  x[3 * 8 + 2] = poison;
  hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  writeDataset(f, "x", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {n, 8}, x.data());
  writeDataset(f, "y", y_file_type, y_mem_type, {n}, y);
  H5Fclose(f);
}

// Writes every input file the cases need into `dir` and returns the table.
std::vector<BadCase> makeBadInputs(const TempDir& dir) {
  writeClassification(dir.file("d.h5"), 100, 8, 10);
  writeClassification(dir.file("d16.h5"), 100, 16, 10);
  saveScriptModel(dir.file("wide.pt"), 16, 10);  // wants 16 features, the data has 8
  saveScriptModel(dir.file("narrow.pt"), 8, 4);  // 4 outputs, labels go to 9
  saveScriptModel(dir.file("m.pt"), 8, 10);
  std::ofstream(dir.file("junk.pt")) << "not a model";
  std::ofstream(dir.file("text.h5")) << "just text, not HDF5\n";
  std::filesystem::create_directory(dir.file("adir"));
  std::ofstream(dir.file("afile")) << "x";
  {  // a valid file cut in half, as an interrupted copy leaves it
    const auto size = std::filesystem::file_size(dir.file("d.h5"));
    std::filesystem::copy_file(dir.file("d.h5"), dir.file("truncated.h5"));
    std::filesystem::resize_file(dir.file("truncated.h5"), size / 2);
  }
  std::vector<int64_t> labels(100), negative(100);
  std::vector<float> float_labels(100);
  for (int i = 0; i < 100; ++i) {
    labels[i] = i % 10;
    negative[i] = i == 7 ? -1 : i % 10;
    float_labels[i] = static_cast<float>(i % 10);
  }
  writeData(dir.file("nan.h5"), H5T_STD_I64LE, H5T_NATIVE_INT64, labels.data(), std::nanf(""));
  writeData(dir.file("inf.h5"), H5T_STD_I64LE, H5T_NATIVE_INT64, labels.data(), std::numeric_limits<float>::infinity());
  writeData(dir.file("negative.h5"), H5T_STD_I64LE, H5T_NATIVE_INT64, negative.data());
  writeData(dir.file("float_y.h5"), H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, float_labels.data());
  {  // 'x' is a group (holding the inputs), not a dataset
    std::vector<float> x(100 * 8, 0.5f);
    hid_t f = H5Fcreate(dir.file("group_x.h5").c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t g = H5Gcreate2(f, "x", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    writeDataset(g, "pixels", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {100, 8}, x.data());
    H5Gclose(g);
    writeDataset(f, "y", H5T_STD_I64LE, H5T_NATIVE_INT64, {100}, labels.data());
    H5Fclose(f);
  }
  {  // inputs of strings, of records, of rank 1; images [N, H, W, C]; labels one short
    hid_t f = H5Fcreate(dir.file("strings.h5").c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    const hid_t str = H5Tcopy(H5T_C_S1);
    H5Tset_size(str, 2);
    const std::string text(100 * 8 * 2, 'a');
    writeDataset(f, "x", str, str, {100, 8}, text.data());
    H5Tclose(str);
    writeDataset(f, "y", H5T_STD_I64LE, H5T_NATIVE_INT64, {100}, labels.data());
    H5Fclose(f);
    std::vector<float> x(100 * 8, 0.5f);
    f = H5Fcreate(dir.file("compound.h5").c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    const hid_t rec = H5Tcreate(H5T_COMPOUND, sizeof(float));
    H5Tinsert(rec, "v", 0, H5T_NATIVE_FLOAT);
    writeDataset(f, "x", rec, rec, {100, 8}, x.data());
    H5Tclose(rec);
    writeDataset(f, "y", H5T_STD_I64LE, H5T_NATIVE_INT64, {100}, labels.data());
    H5Fclose(f);
    f = H5Fcreate(dir.file("rank1.h5").c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    writeDataset(f, "x", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {100}, x.data());
    writeDataset(f, "y", H5T_STD_I64LE, H5T_NATIVE_INT64, {100}, labels.data());
    H5Fclose(f);
    const std::vector<uint8_t> pixels(100 * 4 * 4 * 3, 128);
    f = H5Fcreate(dir.file("nhwc.h5").c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    writeDataset(f, "x", H5T_STD_U8LE, H5T_NATIVE_UINT8, {100, 4, 4, 3}, pixels.data());
    writeDataset(f, "y", H5T_STD_I64LE, H5T_NATIVE_INT64, {100}, labels.data());
    H5Fclose(f);
    f = H5Fcreate(dir.file("labels99.h5").c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    writeDataset(f, "y", H5T_STD_U8LE, H5T_NATIVE_INT64, {99, 1}, labels.data());
    H5Fclose(f);
  }
  std::ofstream(dir.file("exists.h5")) << "an earlier result";

  std::vector<BadCase> cases = {
      // Flags.
      {"--batch-size abc", "--batch-size"},
      {"--batch-size 0", "--batch-size"},
      {"--min-lr 0", "--min-lr"},
      {"--min-lr -1", "--min-lr"},
      {"--min-lr 1 --max-lr 0.5", "--max-lr"},
      {"--min-lr 1 --max-lr 1", "--max-lr"},
      {"--num-training 1", "--num-training"},
      {"--beta 1", "--beta"},
      {"--beta -0.5", "--beta"},
      {"--mode cosine", "--mode"},
      {"--suggest best", "--suggest"},
      {"--optimizer lamb", "--optimizer"},
      {"--loss hinge", "--loss"},
      {"--model resnet", "--model"},
      {"--early-stop-threshold never", "--early-stop-threshold"},
      {"--early-stop-threshold 0", "--early-stop-threshold"},
      {"--device tpu", "--device"},
      {"--comm-timeout 0", "--comm-timeout"},
      {"--nesterov", "--nesterov"},
      {"--optimizer adam --momentum 0.9", "--momentum"},
      {"--accumulate 0", "--accumulate"},
      {"--skip-begin -1", "--skip-begin"},
      {"--betas 0.9", "--betas"},
      {"--no-such-flag", "--no-such-flag"},
      // The tuning grid's refusals, each naming the axis (runtime/grid.h).
      {"--grid optimiser=sgd,adam", "unknown axis \"optimiser\""},
      {"--grid optimizer=", "--grid optimizer="},
      {"--grid seed=0,1 --grid seed=2", "axis seed is given twice"},
      {"--grid data=a.h5,b.h5", "--data cannot be a grid axis"},
      {"--grid batch-size=16,abc", "--grid batch-size=abc"},
      {"--ranks-per-sweep 2", "--ranks-per-sweep applies to a --grid"},
      {"--grid seed=0,1 --ranks-per-sweep 0", "--ranks-per-sweep must be >= 1"},
      {"--grid seed=0,1 --ranks-per-sweep 3", "--ranks-per-sweep 3 must divide the"},
      // A sweep's own flags, checked for every sweep before any runs, naming it.
      {"--nesterov --grid momentum=0.9,0", "--grid sweep 1 (momentum=0): --nesterov needs --momentum > 0"},
      {"--max-lr 1 --grid min-lr=1e-3,2", "--grid sweep 1 (min-lr=2): --max-lr must be greater than --min-lr"},
      {"--loss mse", "--loss mse needs float targets"},
      // Outputs.
      {"--out no/such/dir/r.h5", "--out no/such/dir/r.h5"},
      {"--out afile/r.h5", "--out afile/r.h5"},
      {"--out /proc/lrfind_r.h5", "--out /proc/lrfind_r.h5"},
      {"--out exists.h5", "--out exists.h5"},
      {"--json exists.h5", "--json exists.h5"},
      // Model files.
      {"--model missing.pt", "--model missing.pt"},
      {"--model adir", "--model adir"},
      {"--model junk.pt --data d.h5", "not a TorchScript file"},
      {"--model wide.pt --data d.h5", "rejects inputs of shape [2, 8]"},
      {"--model narrow.pt --data d.h5", "label 9 is out of range for --model narrow.pt, which has 4 outputs"},
      {"--model cnn --data d.h5", "--model cnn needs image inputs"},
      {"--model m.pt --data d.h5 --output 0", "--model m.pt: forward returns one Tensor; --output 0 applies only"},
      {"--model mlp --output logits", "the built-in --model mlp returns one Tensor (drop --output)"},
      // Data files.
      {"--data missing.h5", "--data missing.h5: no such file"},
      {"--data adir", "--data adir: is a directory"},
      {"--data text.h5", "--data text.h5: not an HDF5 file"},
      {"--data truncated.h5", "--data truncated.h5"},
      {"--data d.h5 --x-key nope", "--x-key"},
      {"--data d.h5 --y-key nope", "--y-key"},
      {"--data group_x.h5", "--data group_x.h5: 'x' is a group, not a dataset"},
      {"--model m.pt --data float_y.h5", "--loss cross_entropy needs integer class labels"},
      {"--model m.pt --data nan.h5", "NaN or Inf"},
      {"--model m.pt --data inf.h5", "NaN or Inf"},
      {"--model m.pt --data negative.h5", "negative label"},
      {"--data d.h5 --batch-size 101", "--data d.h5 holds 100 samples, fewer than one global batch"},
      // Data as stored: refused types and layouts, and transforms that do not fit.
      {"--data strings.h5", "--data strings.h5: dataset 'x' holds strings; inputs must be numbers"},
      {"--data compound.h5", "--data compound.h5: dataset 'x' holds a compound type of 4 bytes; inputs must be numbers"},
      {"--model cnn --data rank1.h5", "--data rank1.h5: dataset 'x' must have shape [samples, features...], got [100]"},
      {"--data d.h5 --labels labels99.h5",
       "--labels labels99.h5: dataset 'y' has 99 samples but --data d.h5: dataset 'x' has 100; they must agree"},
      {"--data d.h5 --labels d.h5:nope", "--labels d.h5: dataset 'nope' not found (the file has: x, y)"},
      {"--model cnn --data nhwc.h5 --channels-last --normalize 0.5,0.5:0.2,0.2",
       "--normalize gives 2 means but --data nhwc.h5: dataset 'x' [100, 4, 4, 3] has 3 channels"},
      {"--data d.h5 --channels-last", "--channels-last needs image inputs [samples, H, W, C], but --data d.h5: "
                                      "dataset 'x' has shape [100, 8]"},
      {"--data d.h5 --normalize 0.5", "--normalize must be MEAN[,MEAN...]:STD[,STD...]"},
      {"--data d.h5 --normalize 0.5:0", "--normalize: every STD must be > 0"},
      {"--data d.h5 --input-scale 0", "--input-scale must be a finite non-zero number"},
      {"--channels-last", "apply to an HDF5 --data file, not to the built-in set 'synthetic'"},
      // Parameter groups.
      {"--param-group '^fc2\\.=10'", "--param-group ^fc2\\.=10: the pattern matches no parameter of the model "
                                        "(an earlier pattern may have taken them; the first match wins); its "
                                        "parameters: 1.weight, 1.bias, 3.weight, 3.bias, 5.weight, 5.bias"},
      {"--param-group '([=2'", "--param-group ([=2: '([' is not a valid regular expression"},
      {"--param-group 'weight=0'", "--param-group weight=0: the multiplier must be a positive number, got \"0\""},
      {"--param-group 'weight=-2'", "the multiplier must be a positive number, got \"-2\""},
      {"--param-group weight", "--param-group must be REGEX=MULT"},
      {"--precision fp8", "--precision: fp8 not in {fp32,bf16,fp16}"},
      // Validation data.
      {"--data d.h5 --val-fraction 1.5", "--val-fraction must be in [0, 1)"},
      {"--data d.h5 --val-data d.h5 --val-fraction 0.1", "--val-data and --val-fraction both name the validation data"},
      {"--monitor val", "--monitor val needs validation data: give --val-data FILE or --val-fraction F"},
      {"--data d.h5 --val-fraction 0.1 --val-batches -1", "--val-batches must be >= 0"},
      {"--val-labels d.h5", "--val-labels reads the targets of --val-data; give --val-data too"},
      {"--data d.h5 --val-batches 2", "--val-batches applies to validation data"},
      {"--data d.h5 --val-data synthetic", "--val-data takes an HDF5 file, not the built-in set 'synthetic'"},
      {"--data d.h5 --val-data missing.h5", "--val-data missing.h5: no such file"},
      {"--data d.h5 --val-data d16.h5", "--val-data d16.h5 has samples of shape [16] but --data d.h5 has [8]"},
      {"--data d.h5 --val-data d.h5 --val-labels labels99.h5",
       "--val-labels labels99.h5: dataset 'y' has 99 samples but --val-data d.h5: dataset 'x' has 100"},
      {"--model m.pt --data d.h5 --val-data float_y.h5", "--loss cross_entropy needs integer class labels, but "
                                                         "--val-data float_y.h5 ('y') has float targets"},
      {"--data d.h5 --val-fraction 0.5 --batch-size 60",
       "--val-fraction 0.5 leaves 50 of the 100 rows of --data d.h5 to train on, fewer than one global batch"},
  };
  // A filter this HDF5 lacks: h5py's lzf, written by h5py where it is installed.
  const std::string lzf = "cd '" + dir.path().string() + "' && /usr/bin/python3 -c \"import h5py, numpy as np; "
                          "f = h5py.File('lzf.h5', 'w'); f.create_dataset('x', data=np.ones((100, 8), 'f4'), "
                          "compression='lzf'); f['y'] = np.arange(100) % 10\" >/dev/null 2>&1";
  if (std::system(lzf.c_str()) == 0) {
    cases.push_back({"--data lzf.h5", "--data lzf.h5: dataset 'x' is compressed with the lzf filter (id 32000), which "
                                      "this HDF5 cannot decode; rewrite the file with gzip: h5repack -f GZIP=4 in.h5 "
                                      "out.h5"});
  } else {
    std::fprintf(stderr, "note: no lzf case (/usr/bin/python3 with h5py cannot write one here)\n");
  }
  if (!torch::cuda::is_available()) {
    cases.push_back({"--device cuda", "--device cuda: no usable CUDA GPU"});
    cases.push_back({"--precision fp16", "--precision fp16 needs a CUDA device (LibTorch has no float16 autocast on "
                                         "CPU); on cpu use --precision bf16"});
  }
  return cases;
}

// Runs every case with `launcher` and checks the contract. With several ranks the
// "fewer than one global batch" case uses a per-rank batch that the ranks together
// overrun. (--skip-begin/--skip-end leaving no points is a warning, not an error:
// Cli.TooFewPointsWarnsAndStillSucceeds.)
void checkAll(const std::string& launcher, int ranks) {
  TempDir dir;
  const auto cases = makeBadInputs(dir);
  std::ofstream(dir.file("precious.h5")) << "keep me";
  for (const auto& c : cases) {
    // Every case runs against an existing results file it may overwrite (--force), except
    // the cases about refusing to overwrite.
    const bool about_outputs = c.args.find("--out") != std::string::npos || c.args.find("--json") != std::string::npos;
    std::string args = c.args;
    if (args == "--data d.h5 --batch-size 101" && ranks > 1) args = "--data d.h5 --batch-size 51";
    if (!about_outputs) args += " --out precious.h5 --force";
    const auto t0 = std::chrono::steady_clock::now();
    const auto r = runCli(dir, args, launcher);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_EQ(r.code, 2) << args << ": " << r.err;
    // One line from lrfind_dist (mpirun adds its own banner about the exit code).
    EXPECT_EQ(linesStartingWith(r.err, "lrfind_dist: ").size(), 1u) << args << ": " << r.err;
    if (ranks == 1) {
      EXPECT_EQ(lines(r.err), 1) << args << ": " << r.err;
    }
    EXPECT_NE(r.err.find(c.expected), std::string::npos) << args << ": " << r.err;
    EXPECT_EQ(r.err.find("terminate called"), std::string::npos) << args;
    EXPECT_EQ(r.err.find("Exception raised from"), std::string::npos) << args << ": no LibTorch backtrace";
    EXPECT_LT(seconds, 10.0 * timeScale()) << args << ": every rank must be gone within 10 s";
    EXPECT_EQ(slurp(dir.file("precious.h5")), "keep me") << args;
    EXPECT_EQ(slurp(dir.file("exists.h5")), "an earlier result") << args;
    EXPECT_FALSE(std::filesystem::exists(dir.file("lrfind.h5"))) << args;
    EXPECT_FALSE(std::filesystem::exists(dir.file("lrfind.h5.partial"))) << args;
    EXPECT_FALSE(std::filesystem::exists(dir.file("precious.h5.partial"))) << args;
  }
}

TEST(BadInput, OneProcess) { checkAll("", 1); }

TEST(BadInput, TwoRanks) { checkAll(mpirun(2), 2); }

}  // namespace
}  // namespace lrfind
