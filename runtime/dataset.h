#pragma once
// Training data held in host memory: an HDF5 file or the built-in synthetic set.
//
// HDF5: inputs `x` float32/float64 of rank >= 2 ([samples, features...]); targets `y`
// either int32/int64 class labels of shape [samples] or float32/float64 targets of
// shape [samples, ...]. Inputs are converted to float32, labels to int64.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace lrfind::runtime {

struct Dataset {
  at::Tensor x;         // float32 [n, ...]
  at::Tensor y;         // int64 [n] when has_labels, else float32 [n, ...]
  bool has_labels = true;
  std::string source;   // "synthetic" or the file path
  // Rows held, as sorted global sample indices; empty: all of them, in order.
  std::vector<int64_t> rows;
  int64_t total = 0;    // samples in the whole dataset

  // Rows held in memory.
  int64_t size() const { return x.size(0); }
  int64_t totalSamples() const { return total; }
  // Where global sample `i` sits in x and y; throws if this dataset does not hold it.
  int64_t localRow(int64_t i) const;
  // Largest label held + 1 (has_labels only).
  int64_t numClasses() const;
};

// Given the number of samples in the file, the sorted unique rows to read.
using RowPlan = std::function<std::vector<int64_t>(int64_t samples)>;

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

// Reads and validates `x_key`/`y_key` from `path`: every row, or only the rows `plan`
// asks for (hyperslab reads; the rest of the file is never read). Throws InputError
// with one line naming the file, the dataset and what to do.
Dataset loadHdf5(const std::string& path, const std::string& x_key = "x", const std::string& y_key = "y",
                 const RowPlan& plan = {});

// Throws InputError when a label is >= num_outputs (the model's output width).
void checkLabelsFit(const Dataset& data, int64_t num_outputs, const std::string& model_name);

}  // namespace lrfind::runtime
