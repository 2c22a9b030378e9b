#include "comm/communicator.h"

namespace lrfind::comm {
namespace {

// The Work of a backend that finishes its allreduce before returning.
class CompletedWork final : public Work {
 public:
  bool test() override { return true; }
  void wait() override {}
};

}  // namespace

std::unique_ptr<Work> Communicator::allreduceAsync(at::Tensor& tensor, const AllreduceOptions& opts) {
  allreduce(tensor, opts);
  return std::make_unique<CompletedWork>();
}

}  // namespace lrfind::comm
