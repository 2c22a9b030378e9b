#include "runtime/results.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <optional>
#include <utility>

#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/mman.h>
#endif

#include "common/error.h"
#include "lrfind/config.h"
#include "runtime/hdf5_handle.h"

namespace lrfind::runtime {
namespace fs = std::filesystem;
namespace {

constexpr hsize_t kChunkRows = 256;
const char* const kSeries[] = {"lr", "loss", "loss_raw", "step_seconds"};

void deleteAttr(hid_t obj, const char* name) {
  if (H5Aexists(obj, name) > 0) h5::check(H5Adelete(obj, name), concat("delete attribute ", name));
}

// Scalar numeric attribute; rewritten in place when it exists (steps_completed is
// updated every step, and delete+create would churn the object header).
void writeScalar(hid_t obj, const char* name, hid_t file_type, hid_t mem_type, const void* value) {
  h5::Id attr;
  if (H5Aexists(obj, name) > 0) {
    attr = h5::attribute(H5Aopen(obj, name, H5P_DEFAULT), name);
  } else {
    auto space = h5::dataspace(H5Screate(H5S_SCALAR), name);
    attr = h5::attribute(H5Acreate2(obj, name, file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT), name);
  }
  h5::check(H5Awrite(attr.get(), mem_type, value), concat("write attribute ", name));
}

void writeAttr(hid_t obj, const char* name, double value) {
  writeScalar(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value);
}

void writeAttr(hid_t obj, const char* name, int64_t value) {
  writeScalar(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &value);
}

h5::Id stringType() {
  auto type = h5::datatype(H5Tcopy(H5T_C_S1), "string type");
  h5::check(H5Tset_size(type.get(), H5T_VARIABLE), "string type");
  h5::check(H5Tset_cset(type.get(), H5T_CSET_UTF8), "string type");
  return type;
}

void writeAttr(hid_t obj, const char* name, const std::string& value) {
  deleteAttr(obj, name);
  auto type = stringType();
  auto space = h5::dataspace(H5Screate(H5S_SCALAR), name);
  auto attr = h5::attribute(H5Acreate2(obj, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), name);
  const char* data = value.c_str();
  h5::check(H5Awrite(attr.get(), type.get(), &data), concat("write attribute ", name));
}

h5::Id createSeries(hid_t file, const char* name, hsize_t width) {
  const int rank = width == 0 ? 1 : 2;
  hsize_t dims[2] = {0, width};
  hsize_t max_dims[2] = {H5S_UNLIMITED, width};
  hsize_t chunk[2] = {kChunkRows, std::max<hsize_t>(width, 1)};
  auto space = h5::dataspace(H5Screate_simple(rank, dims, max_dims), name);
  auto props = h5::plist(H5Pcreate(H5P_DATASET_CREATE), name);
  h5::check(H5Pset_chunk(props.get(), rank, chunk), concat("chunk ", name));
  return h5::dataset(H5Dcreate2(file, name, H5T_IEEE_F64LE, space.get(), H5P_DEFAULT, props.get(), H5P_DEFAULT),
                     concat("create dataset ", name));
}

// Sets the rows of a series to `rows`, best effort. The chunk that failed to write was
// never entered in the chunk index, and HDF5 (1.10) then fails to remove it, after it
// has shrunk the extent in memory but before writing the extent to the file. Growing by
// one row and shrinking again writes it: the chunk has left the cache by then.
void shrink(hid_t dataset, hsize_t rows, int world) {
  const hsize_t dims[2] = {rows, static_cast<hsize_t>(world)};
  if (H5Dset_extent(dataset, dims) >= 0) return;
  const hsize_t one_more[2] = {rows + 1, static_cast<hsize_t>(world)};
  H5Dset_extent(dataset, one_more);
  H5Dset_extent(dataset, dims);
}

// The descriptor HDF5's default (sec2) driver writes `file` through, or -1 with another
// driver.
int descriptorOf(hid_t file) {
  h5::Id fapl(H5Fget_access_plist(file), H5Pclose);
  void* handle = nullptr;
  if (!fapl.valid() || H5Pget_driver(fapl.get()) != H5FD_SEC2 ||
      H5Fget_vfd_handle(file, fapl.get(), &handle) < 0 || handle == nullptr) {
    H5Eclear2(H5E_DEFAULT);
    return -1;
  }
  return *static_cast<int*>(handle);
}

// Points `fd` at an anonymous file in memory. Closing an HDF5 file writes what it still
// caches; after a failed write that can fail again, and HDF5 1.10 then keeps a
// half-closed file. Detached, the close succeeds and the file on disk stays as it is.
void detachFromDisk(int fd) {
#ifdef __linux__
  if (fd < 0) return;
  const int sink = ::memfd_create("lrfind-abandoned", MFD_CLOEXEC);
  if (sink < 0) return;
  ::dup2(sink, fd);
  ::close(sink);
#else
  (void)fd;
#endif
}

// Free bytes on the file system of `fd` that this process may use; nullopt when unknown.
std::optional<uint64_t> freeBytes(int fd) {
  struct statvfs st {};
  if (fd < 0 || ::fstatvfs(fd, &st) != 0) return std::nullopt;
  // Root may use the blocks reserved for it, and HDF5 writes with our privileges.
  const uint64_t blocks = ::geteuid() == 0 ? st.f_bfree : st.f_bavail;
  return blocks * static_cast<uint64_t>(st.f_frsize);
}

}  // namespace

std::string partialPath(const std::string& path) { return path + ".partial"; }

void checkOutputPath(const std::string& path, bool force, const std::string& flag) {
  LRFIND_INPUT_CHECK(!path.empty(), flag, " must not be empty");
  std::error_code ec;
  const fs::path p(path);
  LRFIND_INPUT_CHECK(!fs::is_directory(p, ec), flag, " ", path, ": is a directory; give a file name");
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  LRFIND_INPUT_CHECK(fs::is_directory(dir, ec), flag, " ", path, ": directory ", dir.string(),
                     " does not exist; create it first");
  // access(W_OK) says yes to root on read-only or synthetic file systems (/proc):
  // create and remove a probe file instead.
  const fs::path probe = dir / concat(".lrfind_probe_", ::getpid());
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  LRFIND_INPUT_CHECK(fd >= 0, flag, " ", path, ": directory ", dir.string(), " is not writable (",
                     std::strerror(errno), ")");
  ::close(fd);
  ::unlink(probe.c_str());
  LRFIND_INPUT_CHECK(force || !fs::exists(p, ec), flag, " ", path,
                     ": exists; pass --force to overwrite it or choose another name");
}

struct ResultsWriter::Impl {
  void start(const finder::SweepOptions& options, int world_size);
  void append(h5::Id& dataset, const char* name, const double* row, hsize_t width);
  void flush();
  bool finish(const finder::SweepResult& result);  // true: ended normally, to be renamed
  template <typename Fn>
  void guarded(Fn&& body);
  void abandon() noexcept;
  h5::Cause closeAll() noexcept;

  std::string path;
  std::string current;
  RunInfo info;
  h5::Id file;
  int fd = -1;  // the descriptor HDF5 writes through; -1 when unknown
  // Open for the whole sweep: lr, loss, loss_raw, step_seconds, loss_per_rank.
  std::vector<h5::Id> series;
  h5::Id steps_attr;
  int world = 1;
  hsize_t rows = 0;     // rows appended
  hsize_t flushed = 0;  // rows on disk as of the last flush that succeeded
  // Bytes that flushes may still use before the free space is measured again.
  uint64_t budget = 0;
  bool out_of_room = false;  // the last flush was not tried: too little space
  std::string failure;       // set by the first failed write; the file is closed then
};

// Flushes what the last calls wrote, if the file system has room for it.
//
// HDF5 1.10 does not recover from a metadata write that fails: its cache stays
// half-flushed, every later flush and the close fail too, and what reached the disk
// may be half a step. So the writer stops before a flush that might not fit, while the
// file on disk is whole. At most one new chunk per series and a few metadata blocks
// (B-tree nodes, the aggregators) are new in one flush. The free space is measured
// (fstatvfs) again when the flushes since the last measure could have used up half of
// it, and at least every kChunkRows flushes; a file system that fills faster than
// that, a quota or a failing disk still end in HDF5's error, and in abandon()'s repairs.
void ResultsWriter::Impl::flush() {
  const uint64_t need = kChunkRows * sizeof(double) * (std::size(kSeries) + static_cast<uint64_t>(world)) + 16384;
  if (budget < need) {
    if (const auto free = freeBytes(fd)) {
      if (*free < need) {
        out_of_room = true;
        throw h5::Failure(concat("flush ", current),
                          h5::Cause{concat(std::strerror(ENOSPC), " (only ", *free / 1024, " KiB free)"), ENOSPC});
      }
      budget = std::min<uint64_t>(*free / 2, kChunkRows * need);
    } else {
      budget = std::numeric_limits<uint64_t>::max();  // cannot tell: let HDF5 find out
    }
  }
  budget = budget > need ? budget - need : 0;
  LRFIND_H5_CHECK(H5Fflush(file.get(), H5F_SCOPE_GLOBAL), "flush ", current);
  flushed = rows;
}

// Every callback runs its HDF5 work through this: on the worker thread HDF5's printer
// must be silenced too, and after a failed write the file is given up at once (the
// sweep learns of the failure only at its next step).
template <typename Fn>
void ResultsWriter::Impl::guarded(Fn&& body) {
  h5::silenceErrors();
  if (!failure.empty()) throw IoError(failure);
  try {
    body();
  } catch (const h5::Failure& e) {
    // The OS error is the whole story ("No space left on device"); without one, what
    // HDF5 was doing helps.
    failure = concat("--out ", path, ": cannot write ", current, " after ", flushed,
                     " steps: ", e.cause().os_error != 0 ? e.cause().text : std::string(e.what()));
    abandon();
    throw IoError(failure);
  }
}

// After a failed write; best effort, silent, and the file is closed at the end.
// When the flush was not even tried (no room), the file on disk is as the last flush
// left it, and nothing more is written. When HDF5 failed, it may have written part of
// the step: the datasets shrink back to the rows of the last good flush (dropping the
// rows HDF5 could not write, which would otherwise read as zeros), steps_completed says
// so, and only then is stop_reason, an attribute that exists already, rewritten.
void ResultsWriter::Impl::abandon() noexcept {
  if (file.valid() && !out_of_room) {
    for (auto& s : series) {
      if (s.valid()) shrink(s.get(), flushed, world);
    }
    const auto steps = static_cast<int64_t>(flushed);
    if (steps_attr.valid()) H5Awrite(steps_attr.get(), H5T_NATIVE_INT64, &steps);
    if (H5Fflush(file.get(), H5F_SCOPE_GLOBAL) >= 0) {
      try {
        writeAttr(file.get(), "stop_reason", std::string(finder::toString(finder::StopReason::kError)));
        H5Fflush(file.get(), H5F_SCOPE_GLOBAL);
      } catch (const std::exception&) {
        // The steps are on disk; only the marker is missing.
      }
    }
  }
  if (file.valid()) detachFromDisk(fd);
  closeAll();
  H5Eclear2(H5E_DEFAULT);
}

// Closes the attribute, the datasets, then the file; returns the first failure's cause
// (empty text: all closed).
h5::Cause ResultsWriter::Impl::closeAll() noexcept {
  h5::Cause first = steps_attr.close();
  for (auto& s : series) {
    h5::Cause failed = s.close();
    if (first.text.empty()) first = std::move(failed);
  }
  series.clear();
  h5::Cause failed = file.close();
  if (first.text.empty()) first = std::move(failed);
  return first;
}

ResultsWriter::ResultsWriter(std::string path, const RunInfo& info) : impl_(std::make_unique<Impl>()) {
  Impl& d = *impl_;
  d.path = std::move(path);
  d.current = partialPath(d.path);
  d.info = info;
  h5::silenceErrors();
  // At most the 1.8 file format: 1.10's superblock marks a file open for writing, and
  // after a crash HDF5 and h5py then refuse <out>.partial until someone runs h5clear.
  // The 1.8 format leaves a killed job's file readable as it is.
  auto fapl = h5::plist(H5Pcreate(H5P_FILE_ACCESS), "file access properties");
  h5::check(H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_EARLIEST, H5F_LIBVER_V18), "libver bounds");
  d.file = h5::file(H5Fcreate(d.current.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()),
                    concat("--out ", d.path, ": cannot create ", d.current));
  d.fd = descriptorOf(d.file.get());
}

ResultsWriter::~ResultsWriter() {
  // Still open when the sweep never ended (an exception on the way): closing writes what
  // HDF5 caches. One line if that fails, not one per dataset.
  Impl& d = *impl_;
  if (!d.file.valid()) return;
  h5::silenceErrors();
  const h5::Cause failed = d.closeAll();
  if (!failed.text.empty()) {
    std::fprintf(stderr, "lrfind: warning: closing %s failed: %s\n", d.current.c_str(), failed.text.c_str());
  }
}

const std::string& ResultsWriter::currentPath() const { return impl_->current; }

void ResultsWriter::onStart(const finder::SweepOptions& options, int world_size) {
  impl_->guarded([&] { impl_->start(options, world_size); });
}

void ResultsWriter::Impl::start(const finder::SweepOptions& options, int world_size) {
  Impl& d = *this;
  d.world = world_size;
  const hid_t f = d.file.get();
  d.series.clear();
  for (const char* name : kSeries) d.series.push_back(createSeries(f, name, 0));
  d.series.push_back(createSeries(f, "loss_per_rank", static_cast<hsize_t>(d.world)));
  h5::group(H5Gcreate2(f, "suggestions", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "create group suggestions");

  const RunInfo& run = d.info;
  writeAttr(f, "lrfind_version", std::string(LRFIND_VERSION));
  writeAttr(f, "min_lr", options.min_lr);
  writeAttr(f, "max_lr", options.max_lr);
  writeAttr(f, "num_training", options.num_training);
  writeAttr(f, "mode", std::string(finder::toString(options.mode)));
  writeAttr(f, "early_stop_threshold",
            options.early_stop_threshold.value_or(std::numeric_limits<double>::quiet_NaN()));
  writeAttr(f, "beta", options.beta);
  writeAttr(f, "skip_begin", options.skip_begin);
  writeAttr(f, "skip_end", options.skip_end);
  writeAttr(f, "accumulate", options.accumulate);
  writeAttr(f, "suggest_method", std::string(finder::toString(options.suggest)));
  writeAttr(f, "world_size", static_cast<int64_t>(d.world));
  writeAttr(f, "batch_size", run.batch_size);
  writeAttr(f, "global_batch_size", run.global_batch_size);
  writeAttr(f, "optimizer", run.optimizer);
  writeAttr(f, "loss_fn", run.loss_fn);
  writeAttr(f, "model", run.model);
  writeAttr(f, "data", run.data);
  writeAttr(f, "device", run.device);
  writeAttr(f, "seed", run.seed);
  if (!run.config.empty()) writeAttr(f, "config", run.config);
  writeAttr(f, "steps_completed", int64_t{0});
  writeAttr(f, "stop_reason", std::string(finder::toString(finder::StopReason::kRunning)));
  writeAttr(f, "complete", int64_t{0});
  writeAttr(f, "suggested_lr", std::numeric_limits<double>::quiet_NaN());
  d.steps_attr = h5::attribute(H5Aopen(f, "steps_completed", H5P_DEFAULT), "open attribute steps_completed");
  d.flush();
}

void ResultsWriter::Impl::append(h5::Id& ds, const char* name, const double* row, hsize_t width) {
  // Runs every step: no allocation, messages built only on failure.
  const int rank = width == 0 ? 1 : 2;
  hsize_t new_dims[2] = {rows + 1, width};
  LRFIND_H5_CHECK(H5Dset_extent(ds.get(), new_dims), "extend dataset ", name, " in ", current);
  h5::Id file_space(H5Dget_space(ds.get()), H5Sclose);
  LRFIND_H5_CHECK(file_space.get(), "dataspace of ", name, " in ", current);
  hsize_t start[2] = {rows, 0};
  hsize_t count[2] = {1, std::max<hsize_t>(width, 1)};
  LRFIND_H5_CHECK(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start, nullptr, count, nullptr),
                  "select row of ", name);
  h5::Id mem_space(H5Screate_simple(rank, count, nullptr), H5Sclose);
  LRFIND_H5_CHECK(mem_space.get(), "memory dataspace for ", name);
  LRFIND_H5_CHECK(H5Dwrite(ds.get(), H5T_NATIVE_DOUBLE, mem_space.get(), file_space.get(), H5P_DEFAULT, row),
                  "write dataset ", name, " in ", current);
}

void ResultsWriter::onStep(const finder::StepRecord& r) {
  Impl& d = *impl_;
  d.guarded([&] {
    const double values[] = {r.lr, r.loss, r.loss_raw, r.seconds};
    for (std::size_t i = 0; i < std::size(kSeries); ++i) d.append(d.series[i], kSeries[i], &values[i], 0);
    d.append(d.series.back(), "loss_per_rank", r.loss_per_rank.data(), static_cast<hsize_t>(d.world));
    ++d.rows;
    const auto steps = static_cast<int64_t>(d.rows);
    LRFIND_H5_CHECK(H5Awrite(d.steps_attr.get(), H5T_NATIVE_INT64, &steps), "write steps_completed in ", d.current);
    d.flush();
  });
}

void ResultsWriter::onEnd(const finder::SweepResult& result) {
  Impl& d = *impl_;
  bool ended = false;
  d.guarded([&] { ended = d.finish(result); });
  if (ended) {
    std::error_code ec;
    fs::rename(d.current, d.path, ec);
    if (ec) throw IoError(concat("--out ", d.path, ": cannot move ", d.current, " into place: ", ec.message()));
    d.current = d.path;
  }
}

bool ResultsWriter::Impl::finish(const finder::SweepResult& result) {
  Impl& d = *this;
  const hid_t f = d.file.get();
  {
    auto g = h5::group(H5Gopen2(f, "suggestions", H5P_DEFAULT), "open group suggestions");
    for (const auto& s : result.suggestions) {
      const std::string m = finder::toString(s.method);
      writeAttr(g.get(), (m + "_lr").c_str(), s.found ? s.lr : std::numeric_limits<double>::quiet_NaN());
      writeAttr(g.get(), (m + "_index").c_str(), s.found ? s.index : int64_t{-1});
    }
  }
  // An error, an interruption or a timeout leaves <out>.partial, marked complete=0.
  const bool ended = finder::endedNormally(result.stop_reason);
  const auto& chosen = result.suggestion();
  writeAttr(f, "suggested_lr", chosen.found ? chosen.lr : std::numeric_limits<double>::quiet_NaN());
  writeAttr(f, "steps_completed", result.stepsCompleted());
  writeAttr(f, "stop_reason", std::string(finder::toString(result.stop_reason)));
  if (!result.error.empty()) writeAttr(f, "error", result.error);
  writeAttr(f, "complete", int64_t{ended ? 1 : 0});
  d.flush();
  h5::Cause failed = d.closeAll();
  if (!failed.text.empty()) throw h5::Failure(concat("close ", d.current), std::move(failed));
  return ended;
}

namespace {

std::vector<double> readSeries(hid_t file, const char* name, hsize_t* width) {
  auto ds = h5::dataset(H5Dopen2(file, name, H5P_DEFAULT), concat("open dataset ", name));
  auto space = h5::dataspace(H5Dget_space(ds.get()), name);
  hsize_t dims[2] = {0, 1};
  const int rank = H5Sget_simple_extent_dims(space.get(), dims, nullptr);
  if (width != nullptr) *width = rank == 2 ? dims[1] : 1;
  std::vector<double> out(dims[0] * (rank == 2 ? dims[1] : 1));
  if (!out.empty()) {
    h5::check(H5Dread(ds.get(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()),
              concat("read dataset ", name));
  }
  return out;
}

using AttrMaps = std::pair<std::map<std::string, double>*, std::map<std::string, std::string>*>;

void readAttr(hid_t obj, const char* name, AttrMaps* out) {
  auto attr = h5::attribute(H5Aopen(obj, name, H5P_DEFAULT), name);
  auto type = h5::datatype(H5Aget_type(attr.get()), name);
  if (H5Tget_class(type.get()) == H5T_STRING) {
    if (out->second == nullptr) return;
    char* text = nullptr;
    auto mem = stringType();
    h5::check(H5Aread(attr.get(), mem.get(), &text), name);
    (*out->second)[name] = text != nullptr ? text : "";
    H5free_memory(text);
  } else {
    double v = 0;
    h5::check(H5Aread(attr.get(), H5T_NATIVE_DOUBLE, &v), name);
    (*out->first)[name] = v;
  }
}

// HDF5 calls this from C: no exception may cross it.
herr_t collectAttr(hid_t obj, const char* name, const H5A_info_t*, void* data) noexcept {
  try {
    readAttr(obj, name, static_cast<AttrMaps*>(data));
    return 0;
  } catch (...) {
    return -1;
  }
}

}  // namespace

ResultsData readResults(const std::string& path) {
  h5::silenceErrors();
  auto file = h5::file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), concat("open ", path));
  ResultsData d;
  d.lr = readSeries(file.get(), "lr", nullptr);
  d.loss = readSeries(file.get(), "loss", nullptr);
  d.loss_raw = readSeries(file.get(), "loss_raw", nullptr);
  d.step_seconds = readSeries(file.get(), "step_seconds", nullptr);
  hsize_t width = 1;
  const auto flat = readSeries(file.get(), "loss_per_rank", &width);
  for (std::size_t i = 0; i + width <= flat.size(); i += width) {
    d.loss_per_rank.emplace_back(flat.begin() + i, flat.begin() + i + width);
  }
  AttrMaps root(&d.numbers, &d.strings);
  h5::check(H5Aiterate2(file.get(), H5_INDEX_NAME, H5_ITER_INC, nullptr, collectAttr, &root), "attributes");
  auto g = h5::group(H5Gopen2(file.get(), "suggestions", H5P_DEFAULT), "open group suggestions");
  AttrMaps sug(&d.suggestions, nullptr);
  h5::check(H5Aiterate2(g.get(), H5_INDEX_NAME, H5_ITER_INC, nullptr, collectAttr, &sug), "suggestions");
  return d;
}

}  // namespace lrfind::runtime
