#include "comm/agreement.h"

#include <algorithm>
#include <cstring>

#include <ATen/ATen.h>

namespace lrfind::comm {

FailureKind failureKind(const std::exception& e) {
  return dynamic_cast<const InputError*>(&e) != nullptr ? FailureKind::kInput : FailureKind::kError;
}

void throwAgreed(FailureKind kind, const std::string& message) {
  LRFIND_CHECK(kind != FailureKind::kNone, "no failure to agree on");
  if (kind == FailureKind::kInput) throw Agreed<InputError>(message);
  throw Agreed<Error>(message);
}

std::string broadcastText(Communicator& comm, int root, const std::string& text) {
  at::Tensor buffer = at::zeros({kMaxTextBytes}, at::kByte);
  if (comm.rank() == root) {
    std::memcpy(buffer.data_ptr(), text.data(), std::min<std::size_t>(text.size(), kMaxTextBytes - 1));
  }
  comm.broadcast(buffer, BroadcastOptions{root});
  return std::string(static_cast<const char*>(buffer.data_ptr()));
}

void agreeOnSuccess(Communicator& comm, const std::function<void()>& body) {
  FailureKind kind = FailureKind::kNone;
  std::string message;
  try {
    body();
  } catch (const std::exception& e) {
    kind = failureKind(e);
    message = e.what();
  }
  if (comm.size() == 1) {
    if (kind == FailureKind::kInput) throw InputError(message);
    if (kind == FailureKind::kError) throw Error(message);
    return;
  }
  // The lowest failing rank and its kind: rank·4 + kind, minimized (size·4 when none).
  const auto mine = kind != FailureKind::kNone ? static_cast<int64_t>(comm.rank()) * 4 + static_cast<int64_t>(kind)
                                               : static_cast<int64_t>(comm.size()) * 4;
  at::Tensor lowest = at::full({1}, mine, at::kLong);
  comm.allreduce(lowest, AllreduceOptions{ReduceOp::kMin});
  const int64_t value = lowest.item<int64_t>();
  const auto failing = static_cast<int>(value / 4);
  if (failing == comm.size()) return;
  const std::string text = broadcastText(comm, failing, comm.rank() == failing ? message : std::string());
  throwAgreed(static_cast<FailureKind>(value % 4), concat("rank ", failing, ": ", text));
}

}  // namespace lrfind::comm
