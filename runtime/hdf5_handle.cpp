#include "runtime/hdf5_handle.h"

#include <cstdio>

#include "common/error.h"

namespace lrfind::runtime::h5 {

void silenceErrors() {
  static const bool done = [] {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    return true;
  }();
  (void)done;
}

namespace {
herr_t collect(unsigned n, const H5E_error2_t* err, void* data) {
  auto* out = static_cast<std::string*>(data);
  if (err->desc != nullptr && err->desc[0] != '\0') {
    if (!out->empty()) out->append("; ");
    // One line: some descriptions carry newlines (file open failures do).
    for (const char* c = err->desc; *c != '\0'; ++c) out->push_back(*c == '\n' ? ' ' : *c);
  }
  (void)n;
  return 0;
}
}  // namespace

std::string errorStack() {
  std::string text;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, collect, &text);
  H5Eclear2(H5E_DEFAULT);
  return text.empty() ? "no HDF5 error details" : text;
}

void check(herr_t status, const std::string& what) {
  if (status < 0) throw IoError(what + ": " + errorStack());
}

hid_t checkId(hid_t id, const std::string& what) {
  if (id < 0) throw IoError(what + ": " + errorStack());
  return id;
}

void Id::reset() {
  if (id_ >= 0 && closer_ != nullptr) {
    if (closer_(id_) < 0) {
      std::fprintf(stderr, "lrfind: warning: closing HDF5 object failed: %s\n", errorStack().c_str());
    }
  }
  id_ = H5I_INVALID_HID;
}

}  // namespace lrfind::runtime::h5
