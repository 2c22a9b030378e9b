#include "runtime/batches.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include <ATen/ATen.h>

#include "common/error.h"

namespace lrfind::runtime {

std::vector<int64_t> epochPermutation(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> perm(static_cast<std::size_t>(n));
  std::iota(perm.begin(), perm.end(), 0);
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(epoch) + 1);
  for (int64_t i = n - 1; i > 0; --i) {
    // Unbiased bounded draw by rejection; std::uniform_int_distribution is not
    // specified bit for bit across standard libraries.
    const uint64_t bound = static_cast<uint64_t>(i) + 1;
    const uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
    uint64_t r;
    do {
      r = rng();
    } while (r >= limit);
    std::swap(perm[i], perm[static_cast<int64_t>(r % bound)]);
  }
  return perm;
}

BatchIndexer::BatchIndexer(int64_t samples, const BatchPlan& plan, const std::string& source)
    : samples_(samples), plan_(plan) {
  LRFIND_CHECK(plan.world >= 1 && plan.rank >= 0 && plan.rank < plan.world, "bad rank ", plan.rank, " of ",
               plan.world);
  LRFIND_INPUT_CHECK(plan.batch_size >= 1, "--batch-size must be >= 1, got ", plan.batch_size);
  const int64_t global_batch = plan.batch_size * plan.world;
  LRFIND_INPUT_CHECK(samples >= global_batch, "--data ", source, " holds ", samples,
                     " samples, fewer than one global batch (", plan.world, " rank(s) x --batch-size ",
                     plan.batch_size, " = ", global_batch, "); lower --batch-size or use more data");
}

int64_t BatchIndexer::sampleAt(int64_t position) {
  if (!plan_.shuffle) return position % samples_;
  const int64_t epoch = position / samples_;
  auto it = perms_.find(epoch);
  if (it == perms_.end()) {
    // Positions only move forward: epochs before this one are done with.
    perms_.erase(perms_.begin(), perms_.lower_bound(epoch));
    it = perms_.emplace(epoch, epochPermutation(samples_, plan_.seed, epoch)).first;
  }
  return it->second[static_cast<std::size_t>(position % samples_)];
}

std::vector<int64_t> BatchIndexer::peek() {
  std::vector<int64_t> idx(static_cast<std::size_t>(plan_.batch_size));
  const int64_t base = global_step_ * plan_.batch_size * plan_.world + plan_.rank;
  for (int64_t j = 0; j < plan_.batch_size; ++j) {
    idx[static_cast<std::size_t>(j)] = sampleAt(base + j * plan_.world);
  }
  return idx;
}

std::vector<int64_t> rowsUsed(int64_t samples, const BatchPlan& plan, int64_t batches, const std::string& source) {
  BatchIndexer indexer(samples, plan, source);
  std::vector<char> used(static_cast<std::size_t>(samples), 0);
  for (int64_t b = 0; b < batches; ++b) {
    for (int64_t i : indexer.peek()) used[static_cast<std::size_t>(i)] = 1;
    indexer.advance();
  }
  std::vector<int64_t> rows;
  for (int64_t i = 0; i < samples; ++i) {
    if (used[static_cast<std::size_t>(i)]) rows.push_back(i);
  }
  return rows;
}

ShardedBatches::ShardedBatches(const Dataset& data, const BatchPlan& plan, c10::Device device, int64_t samples)
    : data_(data), indexer_(samples < 0 ? data.totalSamples() : samples, plan, data.source), device_(device) {}

finder::Batch ShardedBatches::next() {
  auto rows = indexer_.peek();
  indexer_.advance();
  return makeBatch(data_, std::move(rows), device_);
}

finder::Batch makeBatch(const Dataset& data, std::vector<int64_t> rows, c10::Device device) {
  for (auto& i : rows) i = data.localRow(i);
  at::Tensor idx = at::from_blob(rows.data(), {static_cast<int64_t>(rows.size())}, at::kLong);
  // Rows as stored (uint8 pixels stay uint8 until they are on the device).
  finder::Batch batch{data.stored.index_select(0, idx), data.y.index_select(0, idx)};
  if (device.is_cuda()) {
    // Page-locked staging (LibTorch's caching host allocator) lets the copy run as an
    // asynchronous DMA on the current stream, ordered before the forward pass.
    batch.input = batch.input.pin_memory().to(device, /*non_blocking=*/true);
    batch.target = batch.target.pin_memory().to(device, /*non_blocking=*/true);
  } else if (device.type() != c10::DeviceType::CPU) {
    batch.input = batch.input.to(device);
    batch.target = batch.target.to(device);
  }
  batch.input = modelInputs(batch.input, data.transform);
  return batch;
}

int64_t heldOutRows(int64_t n, double fraction) {
  LRFIND_CHECK(fraction >= 0 && fraction < 1, "held-out fraction ", fraction, " outside [0, 1)");
  // ceil(F·n), computed so that a product that is an integer in exact arithmetic (0.25 ·
  // 400) is not pushed over it by rounding.
  const double exact = fraction * static_cast<double>(n);
  auto held = static_cast<int64_t>(std::floor(exact));
  if (exact - static_cast<double>(held) > 1e-9 * std::max(1.0, exact)) ++held;
  return held;
}

std::vector<int64_t> evalRows(int64_t first, int64_t count, int rank, int world) {
  std::vector<int64_t> rows;
  for (int64_t p = rank; p < count; p += world) rows.push_back(first + p);
  return rows;
}

EvalBatches::EvalBatches(const Dataset& data, std::vector<int64_t> rows, int64_t batch_size, c10::Device device)
    : data_(data), rows_(std::move(rows)), batch_size_(batch_size), device_(device) {
  LRFIND_CHECK(batch_size >= 1, "evaluation batch size ", batch_size);
}

int64_t EvalBatches::numBatches() const {
  return (static_cast<int64_t>(rows_.size()) + batch_size_ - 1) / batch_size_;
}

finder::Batch EvalBatches::batch(int64_t index) {
  const auto begin = rows_.begin() + index * batch_size_;
  const auto end = rows_.begin() + std::min<int64_t>((index + 1) * batch_size_, static_cast<int64_t>(rows_.size()));
  return makeBatch(data_, std::vector<int64_t>(begin, end), device_);
}

}  // namespace lrfind::runtime
