#pragma once
// The batch stream of one rank. One global stream of sample positions 0, 1, 2, …
// maps position p to sample perm_e[p mod n] with epoch e = p / n (perm_e: a seeded
// permutation per epoch, or the file order with shuffle off), so the data cycles when
// it runs out. Global batch s holds positions [s·W·B, (s+1)·W·B); rank r takes
// positions s·W·B + r + j·W for j < B (a stride split). W ranks with batch B thus see
// exactly the samples one process with batch W·B sees.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <c10/core/Device.h>

#include "finder/model.h"
#include "runtime/dataset.h"

namespace lrfind::runtime {

struct BatchPlan {
  int64_t batch_size = 32;  // per rank
  int rank = 0;
  int world = 1;
  bool shuffle = true;
  uint64_t seed = 0;
};

// The sample indices of this rank's batches, one batch after another.
class BatchIndexer {
 public:
  // Throws InputError when `samples` is fewer than one global batch.
  BatchIndexer(int64_t samples, const BatchPlan& plan, const std::string& source);

  // This rank's next batch (global sample indices), without advancing.
  std::vector<int64_t> peek();
  void advance() { ++global_step_; }

 private:
  int64_t sampleAt(int64_t position);

  int64_t samples_;
  BatchPlan plan_;
  int64_t global_step_ = 0;
  std::map<int64_t, std::vector<int64_t>> perms_;  // epoch -> permutation (at most two live)
};

// Every sample this rank's first `batches` batches use, sorted and unique: the rows
// it has to read.
std::vector<int64_t> rowsUsed(int64_t samples, const BatchPlan& plan, int64_t batches, const std::string& source);

class ShardedBatches final : public finder::BatchSource {
 public:
  // `data` holds every sample the plan uses (all of them, or the rows of rowsUsed()).
  // Batches are cut from data.stored, moved to `device` in the stored type and turned
  // into the model's float32 inputs there (modelInputs()). `samples`: the training set
  // is the first `samples` rows of the dataset (--val-fraction holds out the rest);
  // -1: all of them.
  ShardedBatches(const Dataset& data, const BatchPlan& plan, c10::Device device, int64_t samples = -1);

  finder::Batch next() override;

  // The sample indices of this rank's next batch, without advancing (for tests).
  std::vector<int64_t> peekIndices() { return indexer_.peek(); }

 private:
  const Dataset& data_;
  BatchIndexer indexer_;
  c10::Device device_;
};

// Rows `rows` (global sample indices that `data` holds) as one batch on `device`, as
// ShardedBatches cuts them.
finder::Batch makeBatch(const Dataset& data, std::vector<int64_t> rows, c10::Device device);

// Validation mode: the rows held out for --val-fraction F of n rows, ceil(F·n) (the last
// ones of the file); 0 for F = 0.
int64_t heldOutRows(int64_t n, double fraction);

// The held-out rows rank `rank` of `world` evaluates: first + p for every p < count with
// p mod world = rank (a stride split, as for training batches), in order.
std::vector<int64_t> evalRows(int64_t first, int64_t count, int rank, int world);

// This rank's share of the held-out data: `rows` (global sample indices that `data`
// holds), in batches of at most `batch_size` in order; the same batches at every
// evaluation.
class EvalBatches final : public finder::EvalSource {
 public:
  EvalBatches(const Dataset& data, std::vector<int64_t> rows, int64_t batch_size, c10::Device device);

  int64_t numBatches() const override;
  finder::Batch batch(int64_t index) override;

 private:
  const Dataset& data_;
  std::vector<int64_t> rows_;
  int64_t batch_size_;
  c10::Device device_;
};

// Epoch `epoch`'s permutation of 0 … n-1 for `seed` (Fisher–Yates over mt19937_64).
std::vector<int64_t> epochPermutation(int64_t n, uint64_t seed, int64_t epoch);

}  // namespace lrfind::runtime
