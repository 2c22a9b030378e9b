#pragma once
// Move-only RAII ids for the HDF5 C API, and a check that turns a failed call into an
// lrfind::IoError carrying the file, the object and HDF5's own error-stack text.
// HDF5's automatic stderr dump is silenced once per process (HighFive does the same).

#include <hdf5.h>

#include "common/error.h"

#include <string>
#include <utility>

namespace lrfind::runtime::h5 {

// Silences HDF5's default error printer; idempotent.
void silenceErrors();

// The current HDF5 error stack as one line ("major: minor; ..."), then clears it.
std::string errorStack();

// Throws IoError("<what>: <stack>") when `status` is negative.
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
  void reset();

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
#define LRFIND_H5_CHECK(call, ...)                                              \
  do {                                                                          \
    if ((call) < 0) {                                                           \
      throw ::lrfind::IoError(::lrfind::concat(__VA_ARGS__, ": ",               \
                                               ::lrfind::runtime::h5::errorStack())); \
    }                                                                           \
  } while (0)
