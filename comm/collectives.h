#pragma once
// Small helpers built on the Communicator interface.

#include <string>

#include "comm/communicator.h"

namespace lrfind::comm {

// Every rank calls it; all return root's `text`, cut to kMaxTextBytes - 1 bytes. For
// error messages that one rank knows and every rank must print.
constexpr int kMaxTextBytes = 1024;
std::string broadcastText(Communicator& comm, int root, const std::string& text);

}  // namespace lrfind::comm
