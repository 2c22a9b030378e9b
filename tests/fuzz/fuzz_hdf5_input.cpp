// Fuzz target: lrfind's validation of HDF5 data files. The input does not feed HDF5's
// own parser; it describes a file (which datasets exist, their types, shapes, values,
// chunking, attributes, groups in their place) that the harness writes with the HDF5
// API, plus a row plan (ranks, batch size, shuffling). Then it runs what lrfind_dist
// runs on a user's file: loadHdf5 with the plan's rows and a scale, --channels-last and
// --normalize picked by the input, checkLabelsFit and a few batches (float32 inputs). Contract checked: bad files give lrfind::Error (InputError or IoError) and
// nothing else; no crash, no sanitizer report.

#include <hdf5.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <c10/util/Exception.h>

#include "common/error.h"
#include "fuzz_util.h"
#include "runtime/batches.h"
#include "runtime/dataset.h"

namespace {

class Bytes {
 public:
  Bytes(const uint8_t* data, size_t size) : p_(data), n_(size) {}
  uint8_t next() {
    if (n_ == 0) return 0;
    --n_;
    return *p_++;
  }
  // Fills `out` with the remaining bytes, cycling them (zeros when none are left).
  void fill(std::vector<uint8_t>& out) {
    for (size_t i = 0; i < out.size(); ++i) out[i] = n_ == 0 ? 0 : p_[i % n_];
  }

 private:
  const uint8_t* p_;
  size_t n_;
};

// The element type a byte picks: numbers the loader accepts or rejects, and types it
// must refuse with a message (strings, compounds).
hid_t pickType(uint8_t b) {
  switch (b % 13) {
    case 0: return H5Tcopy(H5T_NATIVE_FLOAT);
    case 1: return H5Tcopy(H5T_NATIVE_DOUBLE);
    case 2: return H5Tcopy(H5T_NATIVE_INT32);
    case 3: return H5Tcopy(H5T_NATIVE_INT64);
    case 4: return H5Tcopy(H5T_NATIVE_UINT8);
    case 5: return H5Tcopy(H5T_NATIVE_INT16);
    case 6: {
      hid_t s = H5Tcopy(H5T_C_S1);
      H5Tset_size(s, 4);
      return s;
    }
    case 7: {
      hid_t c = H5Tcreate(H5T_COMPOUND, sizeof(float));
      H5Tinsert(c, "v", 0, H5T_NATIVE_FLOAT);
      return c;
    }
    case 9: {  // IEEE half, as h5py writes float16
      hid_t h = H5Tcopy(H5T_IEEE_F32LE);
      H5Tset_fields(h, 15, 10, 5, 0, 10);
      H5Tset_size(h, 2);
      H5Tset_ebias(h, 15);
      return h;
    }
    case 10: return H5Tcopy(H5T_STD_U16BE);
    case 11: {  // h5py's bool
      hid_t e = H5Tenum_create(H5T_NATIVE_INT8);
      int8_t v = 0;
      H5Tenum_insert(e, "FALSE", &v);
      v = 1;
      H5Tenum_insert(e, "TRUE", &v);
      return e;
    }
    default: return H5Tcopy(H5T_STD_I64BE);  // big-endian labels
  }
}

// Writes one dataset (or a group / nothing in its place) described by the next bytes.
void writeEntry(hid_t file, const char* name, Bytes& in) {
  const uint8_t how = in.next();
  if (how % 7 == 0) return;  // missing
  if (how % 7 == 1) {        // a group where a dataset should be
    H5Gclose(H5Gcreate2(file, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    return;
  }
  const int rank = in.next() % 5;
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  hsize_t count = 1;
  for (auto& d : dims) {
    d = in.next() % 9;
    count *= d;
  }
  const hid_t type = pickType(in.next());
  const hid_t space = rank == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(rank, dims.data(), nullptr);
  const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  if ((how & 0x10) != 0 && rank > 0 && count > 0) {  // chunked, a chunk per leading row
    std::vector<hsize_t> chunk = dims;
    chunk[0] = 1;
    H5Pset_chunk(dcpl, rank, chunk.data());
  }
  const hid_t ds = H5Dcreate2(file, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  if (ds >= 0) {
    std::vector<uint8_t> values(static_cast<size_t>(count) * H5Tget_size(type));
    in.fill(values);
    if (!values.empty()) H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data());
    if ((how & 0x20) != 0) {  // an attribute the loader should not care about
      const hid_t aspace = H5Screate(H5S_SCALAR);
      const hid_t attr = H5Acreate2(ds, "units", H5T_NATIVE_INT, aspace, H5P_DEFAULT, H5P_DEFAULT);
      const int v = how;
      H5Awrite(attr, H5T_NATIVE_INT, &v);
      H5Aclose(attr);
      H5Sclose(aspace);
    }
    H5Dclose(ds);
  }
  H5Pclose(dcpl);
  H5Sclose(space);
  H5Tclose(type);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const bool quiet = [] { return H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr) >= 0; }();
  (void)quiet;
  Bytes in(data, size);
  lrfind::runtime::BatchPlan plan;
  plan.world = 1 + in.next() % 3;
  plan.rank = in.next() % plan.world;
  plan.batch_size = 1 + in.next() % 6;
  plan.shuffle = (in.next() & 1) != 0;
  plan.seed = in.next();
  const int64_t batches = 1 + in.next() % 4;
  const int64_t outputs = 1 + in.next() % 12;
  const std::string x_key = (in.next() & 7) == 0 ? "inputs" : "x";

  const std::string path = lrfind::fuzz::scratchPath(".h5");
  const hid_t file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (file < 0) std::abort();
  writeEntry(file, "x", in);
  writeEntry(file, "y", in);
  H5Fclose(file);
  // How the inputs are read, from a byte after the file's (older seeds keep their files):
  // the scale, --channels-last, --normalize with one value or three, a read per band.
  const uint8_t how = in.next();
  lrfind::runtime::DataSource source;
  source.x_key = x_key;
  if ((how & 1) != 0) source.input_scale = (how & 2) != 0 ? 0.5 : -1.0 / 255.0;
  source.channels_last = (how & 4) != 0;
  if ((how & 8) != 0) {
    source.mean.assign((how & 16) != 0 ? 3 : 1, 0.25);
    source.std.assign(source.mean.size(), (how & 32) != 0 ? 2.0 : 0.5);
  }
  if ((how & 64) != 0) source.piece_bytes = 1;

  try {
    source.path = path;
    const auto d = lrfind::runtime::loadHdf5(source, [&](int64_t samples) {
      return lrfind::runtime::rowsUsed(samples, plan, batches, path);
    });
    if (d.has_labels) lrfind::runtime::checkLabelsFit(d, outputs, "fuzz");
    lrfind::runtime::ShardedBatches stream(d, plan, c10::Device(c10::DeviceType::CPU));
    for (int64_t b = 0; b < batches; ++b) {
      const auto batch = stream.next();
      if (batch.input.size(0) != plan.batch_size || batch.target.size(0) != plan.batch_size) std::abort();
      if (batch.input.scalar_type() != c10::kFloat) std::abort();
    }
  } catch (const lrfind::Error&) {
    // The contract: bad input is an lrfind error with a message.
  }
  // Anything else (c10::Error, std::exception) escapes and the fuzzer reports it.
  return 0;
}
