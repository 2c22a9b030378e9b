#pragma once
// Averages the gradients of a fixed list of parameters over all ranks of a
// Communicator, through flat buckets: the gradients are laid end to end (in parameter
// order) and cut into buckets of at most `bucket_bytes`; a parameter may span several
// buckets. Each bucket is one allreduce. Buckets are allocated once and reused.
//
// Contract: every rank constructs it with the same parameter shapes, dtypes and bucket
// size, and calls average() at the same point of each step. Parameters with no
// gradient contribute zeros and receive the average, so ranks never diverge on which
// tensors are reduced. All parameters of one GradientAverager share a device and a
// dtype. A world of one does no work at all.

#include <cstddef>
#include <vector>

#include <ATen/core/Tensor.h>

#include "comm/communicator.h"

namespace lrfind::comm {

constexpr std::size_t kDefaultBucketBytes = 25u << 20;  // DDP's default, 25 MiB.

class GradientAverager {
 public:
  GradientAverager(Communicator& comm, std::vector<at::Tensor> params,
                   std::size_t bucket_bytes = kDefaultBucketBytes);

  void average();

  std::size_t numBuckets() const { return buckets_.size(); }

 private:
  struct Segment {
    std::size_t param;   // index into params_
    int64_t offset;      // first element within the parameter
    int64_t numel;       // elements in this bucket
    int64_t bucket_off;  // first element within the bucket
  };
  struct Bucket {
    at::Tensor buffer;
    std::vector<Segment> segments;
  };

  Communicator& comm_;
  std::vector<at::Tensor> params_;
  std::vector<Bucket> buckets_;
};

}  // namespace lrfind::comm
