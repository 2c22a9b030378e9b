#pragma once
// Move-only RAII ids for the HDF5 C API, and a check that turns a failed call into an
// h5::Failure (an lrfind::IoError) carrying what was being done and the cause.
//
// The cause is the innermost entry of HDF5's error stack, not the whole stack: that
// entry is where the failure started (the driver's write(), the superblock check), and
// the entries above it only repeat "unable to flush" up to the API call. When the
// innermost entry carries an OS error ("errno = 28, error message = ..."), the cause is
// that error in strerror's words ("No space left on device").
//
// Threads: HDF5 (thread-safe build) keeps its error stack and its automatic stderr
// printer per thread. Call silenceErrors() on every thread that calls HDF5, before the
// first call; it is cheap after the first time on a thread. The first call in the
// process, when it comes before any other HDF5 call, also turns off HDF5's shutdown at
// exit (H5dont_atexit): lrfind closes its files itself.

#include <hdf5.h>

#include "common/error.h"

#include <string>
#include <utility>

namespace lrfind::runtime::h5 {

// Silences HDF5's default error printer on the calling thread; idempotent.
void silenceErrors();

// What went wrong in a failed HDF5 call.
struct Cause {
  std::string text;  // one line: strerror's words when os_error != 0
  int os_error = 0;  // the errno HDF5 reported, 0 when none
};

// The innermost cause on the calling thread's error stack, then clears the stack.
Cause takeCause();

// One HDF5 error-stack description reduced to its cause: an "errno = N" in it gives
// strerror(N); otherwise the text on one line.
Cause causeOf(const std::string& description);

// A failed HDF5 call: what() is "<what>: <cause>".
class Failure : public IoError {
 public:
  Failure(const std::string& what, Cause cause)
      : IoError(what + ": " + cause.text), cause_(std::move(cause)) {}
  const Cause& cause() const { return cause_; }

 private:
  Cause cause_;
};

// Throws Failure(what, takeCause()) when `status` (or `id`) is negative.
void check(herr_t status, const std::string& what);
hid_t checkId(hid_t id, const std::string& what);

class Id {
 public:
  using Closer = herr_t (*)(hid_t);
  Id() = default;
  Id(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  Id(const Id&) = delete;
  Id& operator=(const Id&) = delete;
  Id(Id&& other) noexcept { *this = std::move(other); }
  Id& operator=(Id&& other) noexcept {
    if (this != &other) {
      reset();
      id_ = std::exchange(other.id_, H5I_INVALID_HID);
      closer_ = other.closer_;
    }
    return *this;
  }
  ~Id() { reset(); }

  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  // Closes now; a failure is logged as one warning line.
  void reset();
  // Closes now; returns the cause when closing failed (closing a dataset or a file
  // writes what HDF5 still caches), an empty text otherwise. Logs nothing.
  Cause close();

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer closer_ = nullptr;
};

inline Id file(hid_t id, const std::string& what) { return Id(checkId(id, what), H5Fclose); }
inline Id dataset(hid_t id, const std::string& what) { return Id(checkId(id, what), H5Dclose); }
inline Id dataspace(hid_t id, const std::string& what) { return Id(checkId(id, what), H5Sclose); }
inline Id datatype(hid_t id, const std::string& what) { return Id(checkId(id, what), H5Tclose); }
inline Id group(hid_t id, const std::string& what) { return Id(checkId(id, what), H5Gclose); }
inline Id attribute(hid_t id, const std::string& what) { return Id(checkId(id, what), H5Aclose); }
inline Id plist(hid_t id, const std::string& what) { return Id(checkId(id, what), H5Pclose); }

}  // namespace lrfind::runtime::h5

// Wraps an HDF5 call returning herr_t; the message (concat of the rest) is only built
// when the call fails, so the macro costs nothing on the per-step path.
#define LRFIND_H5_CHECK(call, ...)                                                               \
  do {                                                                                           \
    if ((call) < 0) {                                                                            \
      throw ::lrfind::runtime::h5::Failure(::lrfind::concat(__VA_ARGS__),                        \
                                           ::lrfind::runtime::h5::takeCause());                  \
    }                                                                                            \
  } while (0)
