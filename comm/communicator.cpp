#include "comm/communicator.h"

#include "common/error.h"

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

std::unique_ptr<SharedBuffer> Communicator::sharedBuffer(int64_t, c10::ScalarType, std::string* why) {
  if (why != nullptr) *why = concat("the ", name(), " backend has no shared-memory buffers");
  return nullptr;
}

}  // namespace lrfind::comm
