#include "runtime/hdf5_handle.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "common/error.h"

namespace lrfind::runtime::h5 {

void silenceErrors() {
  // Before HDF5 starts (only then does it count): no shutdown at exit. lrfind closes its
  // files itself, and HDF5 1.10's shutdown crashes on a file whose close failed (after a
  // failed write the close can fail, and the file stays half-closed).
  static const bool no_atexit = [] {
    H5dont_atexit();
    return true;
  }();
  (void)no_atexit;
  // Per thread: a thread-safe HDF5 keeps the automatic printer with each thread's stack,
  // and the results are written from a worker thread.
  thread_local const bool done = [] {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    return true;
  }();
  (void)done;
}

Cause causeOf(const std::string& description) {
  Cause cause;
  // HDF5's file drivers end their message with the OS error, as in
  // "file write failed: time = ..., errno = 28, error message = 'No space left on device', ...".
  const auto at = description.find("errno = ");
  if (at != std::string::npos) {
    const long number = std::strtol(description.c_str() + at + 8, nullptr, 10);
    if (number > 0) {
      cause.os_error = static_cast<int>(number);
      cause.text = std::strerror(cause.os_error);
      return cause;
    }
  }
  // One line, single spaces: some descriptions carry newlines (the drivers' do).
  for (const char c : description) {
    const bool space = c == '\n' || c == '\r' || c == '\t' || c == ' ';
    if (space) {
      if (!cause.text.empty() && cause.text.back() != ' ') cause.text.push_back(' ');
    } else {
      cause.text.push_back(c);
    }
  }
  while (!cause.text.empty() && cause.text.back() == ' ') cause.text.pop_back();
  return cause;
}

namespace {

struct Walk {
  std::string innermost;  // the first description, walking up from the deepest entry
  std::string with_errno;  // the deepest one that names an OS error
};

herr_t visit(unsigned, const H5E_error2_t* err, void* data) {
  auto* walk = static_cast<Walk*>(data);
  if (err->desc == nullptr || err->desc[0] == '\0') return 0;
  if (walk->innermost.empty()) walk->innermost = err->desc;
  if (walk->with_errno.empty() && std::strstr(err->desc, "errno = ") != nullptr) walk->with_errno = err->desc;
  return 0;
}

}  // namespace

Cause takeCause() {
  Walk walk;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, visit, &walk);
  H5Eclear2(H5E_DEFAULT);
  if (!walk.with_errno.empty()) {
    Cause cause = causeOf(walk.with_errno);
    if (cause.os_error != 0) return cause;
  }
  if (walk.innermost.empty()) return Cause{"no HDF5 error details", 0};
  return causeOf(walk.innermost);
}

void check(herr_t status, const std::string& what) {
  if (status < 0) throw Failure(what, takeCause());
}

hid_t checkId(hid_t id, const std::string& what) {
  if (id < 0) throw Failure(what, takeCause());
  return id;
}

Cause Id::close() {
  Cause failure;
  if (id_ >= 0 && closer_ != nullptr && closer_(id_) < 0) failure = takeCause();
  id_ = H5I_INVALID_HID;
  return failure;
}

void Id::reset() {
  const Cause failure = close();
  if (!failure.text.empty()) {
    std::fprintf(stderr, "lrfind: warning: closing an HDF5 object failed: %s\n", failure.text.c_str());
  }
}

}  // namespace lrfind::runtime::h5
