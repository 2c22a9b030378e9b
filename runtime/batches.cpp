#include "runtime/batches.h"

#include <numeric>
#include <random>

#include <ATen/ATen.h>

#include "comm/errors.h"

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

ShardedBatches::ShardedBatches(const Dataset& data, const BatchPlan& plan, c10::Device device)
    : data_(data), plan_(plan), device_(device) {
  LRFIND_CHECK(plan.world >= 1 && plan.rank >= 0 && plan.rank < plan.world, "bad rank ",
               plan.rank, " of ", plan.world);
  LRFIND_INPUT_CHECK(plan.batch_size >= 1, "--batch-size must be >= 1, got ", plan.batch_size);
  const int64_t global_batch = plan.batch_size * plan.world;
  LRFIND_INPUT_CHECK(data.size() >= global_batch, "--data ", data.source, " holds ", data.size(),
                     " samples, fewer than one global batch (", plan.world, " rank(s) x --batch-size ",
                     plan.batch_size, " = ", global_batch, "); lower --batch-size or use more data");
}

int64_t ShardedBatches::sampleAt(int64_t position) {
  const int64_t n = data_.size();
  if (!plan_.shuffle) return position % n;
  const int64_t epoch = position / n;
  auto it = perms_.find(epoch);
  if (it == perms_.end()) {
    // Positions only move forward: epochs before this one are done with.
    perms_.erase(perms_.begin(), perms_.lower_bound(epoch));
    it = perms_.emplace(epoch, epochPermutation(n, plan_.seed, epoch)).first;
  }
  return it->second[static_cast<std::size_t>(position % n)];
}

std::vector<int64_t> ShardedBatches::peekIndices() {
  std::vector<int64_t> idx(static_cast<std::size_t>(plan_.batch_size));
  const int64_t base = global_step_ * plan_.batch_size * plan_.world + plan_.rank;
  for (int64_t j = 0; j < plan_.batch_size; ++j) {
    idx[static_cast<std::size_t>(j)] = sampleAt(base + j * plan_.world);
  }
  return idx;
}

finder::Batch ShardedBatches::next() {
  const auto idx_vec = peekIndices();
  ++global_step_;
  at::Tensor idx = at::from_blob(const_cast<int64_t*>(idx_vec.data()),
                                 {static_cast<int64_t>(idx_vec.size())}, at::kLong);
  finder::Batch batch{data_.x.index_select(0, idx), data_.y.index_select(0, idx)};
  if (device_.type() != c10::DeviceType::CPU) {
    batch.input = batch.input.to(device_);
    batch.target = batch.target.to(device_);
  }
  return batch;
}

}  // namespace lrfind::runtime
