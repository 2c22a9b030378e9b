#pragma once
// Training data held in host memory: an HDF5 file or the built-in synthetic set.
//
// HDF5 inputs `x` (rank >= 2, [samples, features...]) of any numeric type are held as
// stored (`Dataset::stored`, see the table at inputDtype()) and become the model's
// float32 inputs one batch at a time, on the batch's device (modelInputs()): times the
// input scale, then normalized per channel, then, with channels_last, [N,H,W,C]
// permuted to [N,C,H,W]. Targets `y` (or a dataset of another file) are class labels of
// any integer type or bool ([samples], trailing size-1 dimensions dropped), held as
// int64, or float targets [samples, ...], held as float32.
//
// Reading: only the rows the plan asks for, in pieces of whole bands of the dataset's
// chunks along the sample axis, each read as OR'ed selections of up to 512 runs of rows
// with a chunk cache that holds the piece, so that no compressed chunk is decompressed
// twice.

#include <cstdint>
#include <cstdio>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

namespace lrfind::runtime {

// How stored inputs become the model's: x * scale, then (x - mean[c]) / std[c] over the
// channel axis (the file's last axis with channels_last; else axis 1 of rank-2 and
// rank >= 4 inputs, and none for rank-3 [samples, H, W] images), then the permutation.
struct InputTransform {
  double scale = 1;
  std::vector<double> mean, std;  // empty: no normalization; else one value or one per channel
  bool channels_last = false;     // stored [N, ..., C]: the model gets [N, C, ...]
  // Nothing to do for float32 inputs.
  bool identity() const { return scale == 1 && mean.empty() && !channels_last; }
};

// The model's float32 inputs from stored rows ([n, ...] in the stored dtype and
// layout), on the rows' device. A float32 input with an identity transform is returned
// as is. A scale of 1/k for an integer k divides by k, so that uint8 pixels give the
// same bits as numpy's float32 x / 255.
at::Tensor modelInputs(const at::Tensor& stored, const InputTransform& transform);

struct Dataset {
  // Inputs of the rows held, as the file stores them (dtype and layout; float64 is read
  // as float32). Batches are cut from here and converted with `transform`.
  at::Tensor stored;
  InputTransform transform;
  std::string input_type = "float32";  // numpy's name for the stored type in the file
  // The model's view of the inputs (float32, channels first): every row held when
  // `stored` already is that (a float file without scaling, normalization or
  // permutation; the synthetic sets), else the first min(size(), 2) rows only, for
  // sizing a built-in model and the dry forward pass.
  at::Tensor x;
  at::Tensor y;         // int64 [n] when has_labels, else float32 [n, ...]
  bool has_labels = true;
  std::string source;   // "synthetic" or the file path
  std::string labels_source;  // "<file>:<dataset>" when the labels came from --labels; else ""
  std::string flag = "--data", labels_flag = "--labels";  // DataSource's: how messages name the files
  // Rows held, as sorted global sample indices; empty: all of them, in order.
  std::vector<int64_t> rows;
  int64_t total = 0;    // samples in the whole dataset

  // Rows held in memory.
  int64_t size() const { return stored.size(0); }
  int64_t totalSamples() const { return total; }
  // Where global sample `i` sits in stored/x and y; throws if this dataset does not hold it.
  int64_t localRow(int64_t i) const;
  // Largest label held + 1 (has_labels only).
  int64_t numClasses() const;
};

// Given the number of samples in the file, the sorted unique rows to read.
using RowPlan = std::function<std::vector<int64_t>(int64_t samples)>;

// Called while the inputs are read: rows of `x` read so far, of `total`.
using ReadProgress = std::function<void(int64_t done, int64_t total)>;

// What to read and how to turn it into model inputs.
struct DataSource {
  std::string path;
  std::string x_key = "x";
  std::string y_key = "y";
  std::string labels_path;  // another file holding the targets; "" for `path`
  std::string labels_key;   // the targets' dataset in labels_path; "" for y_key
  std::optional<double> input_scale;  // nullopt: defaultInputScale() of the stored type
  std::vector<double> mean, std;      // per-channel normalization after scaling
  bool channels_last = false;
  // How messages name the file and the labels file: another file read with the same
  // options says "--val-data" and "--val-labels".
  std::string flag = "--data";
  std::string labels_flag = "--labels";
  ReadProgress progress;  // optional
  int64_t piece_bytes = int64_t{64} << 20;  // work per H5Dread: chunk bytes (rows, not chunked)
};

// "FILE" or "FILE:DATASET" (--labels): the file and the dataset, "" when not named. A
// text naming an existing file is the file, even if it holds a ':'.
std::pair<std::string, std::string> splitLabelsArgument(const std::string& text);

// 1/255 for uint8 inputs (pixels), 1 for every other stored type.
double defaultInputScale(const std::string& input_type);

struct SyntheticSpec {
  int64_t samples = 4096;
  int64_t features = 32;
  int64_t classes = 10;
  int64_t image_side = 0;  // > 0: inputs are [samples, side, side] images (features = side²)
};

// The built-in sets by --data name: "synthetic" (4096 x 32 features) and
// "synthetic-images" (4096 x 16 x 16, for --model cnn); nullopt for other names.
std::optional<SyntheticSpec> syntheticSpec(const std::string& name);

// Gaussian blobs, one per class, seeded: the same seed gives the same bits everywhere.
Dataset makeSynthetic(uint64_t seed, const SyntheticSpec& spec = {});

// Reads and validates the inputs and targets `source` names: every row, or only the
// rows `plan` asks for (the rest of the file is never read). Throws InputError with one
// line naming the file, the dataset and what to do.
Dataset loadHdf5(const DataSource& source, const RowPlan& plan = {});
Dataset loadHdf5(const std::string& path, const std::string& x_key = "x", const std::string& y_key = "y",
                 const RowPlan& plan = {});

// A ReadProgress that prints "lrfind_dist: reading <what>: 40% (…)" on `out` once the
// read has taken more than a second: one line rewritten in place on a terminal, a line
// every 5 s otherwise, and a last line when done.
ReadProgress consoleReadProgress(std::FILE* out, std::string what, bool terminal);

// Throws InputError when a label is >= num_outputs (the model's output width).
void checkLabelsFit(const Dataset& data, int64_t num_outputs, const std::string& model_name);

}  // namespace lrfind::runtime
