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

std::vector<std::string> gatherText(Communicator& comm, int root, const std::string& text) {
  at::Tensor mine = at::zeros({kGatherTextBytes}, at::kByte);
  std::memcpy(mine.data_ptr(), text.data(), std::min<std::size_t>(text.size(), kGatherTextBytes - 1));
  const bool is_root = comm.rank() == root;
  at::Tensor all = is_root ? at::zeros({comm.size() * kGatherTextBytes}, at::kByte) : at::Tensor();
  comm.gather(mine, all, GatherOptions{root});
  std::vector<std::string> texts;
  if (!is_root) return texts;
  const auto* bytes = static_cast<const char*>(all.data_ptr());
  for (int r = 0; r < comm.size(); ++r) texts.emplace_back(bytes + static_cast<std::ptrdiff_t>(r) * kGatherTextBytes);
  return texts;
}

void agreeOnSuccess(Communicator& comm, const std::function<void()>& body) {
  FailureKind kind = FailureKind::kNone;
  std::string message;
  try {
    body();
  } catch (const CommTimeout&) {
    throw;  // the communicator is unusable: nothing more can be agreed on
  } catch (const AgreedFailure&) {
    throw;  // agreed inside `body` already: every rank throws it
  } catch (const std::exception& e) {
    kind = failureKind(e);
    message = e.what();
  }
  if (comm.size() == 1) {
    if (kind == FailureKind::kInput) throw InputError(message);
    if (kind == FailureKind::kError) throw Error(message);
    return;
  }
  // Every rank's kind reaches rank 0 through a gather (per-rank receives: a rank that
  // never arrives is named by the stall warning and the timeout), which picks the lowest
  // failing rank and broadcasts it with its kind.
  at::Tensor mine = at::full({1}, static_cast<int64_t>(kind), at::kLong);
  at::Tensor all = comm.rank() == 0 ? at::zeros({comm.size()}, at::kLong) : at::Tensor();
  comm.gather(mine, all);
  at::Tensor verdict = at::full({2}, int64_t{-1}, at::kLong);  // {failing rank, its kind}
  if (comm.rank() == 0) {
    const auto* kinds = all.data_ptr<int64_t>();
    for (int r = 0; r < comm.size(); ++r) {
      if (kinds[r] == static_cast<int64_t>(FailureKind::kNone)) continue;
      verdict[0] = r;
      verdict[1] = kinds[r];
      break;
    }
  }
  comm.broadcast(verdict);
  const auto failing = static_cast<int>(verdict[0].item<int64_t>());
  if (failing < 0) return;
  const std::string text = broadcastText(comm, failing, comm.rank() == failing ? message : std::string());
  throwAgreed(static_cast<FailureKind>(verdict[1].item<int64_t>()), concat("rank ", failing, ": ", text));
}

}  // namespace lrfind::comm
