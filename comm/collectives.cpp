#include "comm/collectives.h"

#include <algorithm>
#include <cstring>

#include <ATen/ATen.h>

namespace lrfind::comm {

std::string broadcastText(Communicator& comm, int root, const std::string& text) {
  at::Tensor buffer = at::zeros({kMaxTextBytes}, at::kByte);
  if (comm.rank() == root) {
    std::memcpy(buffer.data_ptr(), text.data(), std::min<std::size_t>(text.size(), kMaxTextBytes - 1));
  }
  comm.broadcast(buffer, BroadcastOptions{root});
  return std::string(static_cast<const char*>(buffer.data_ptr()));
}

}  // namespace lrfind::comm
