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
// Validation mode's series, after loss_per_rank (and group_lr).
const char* const kValSeries[] = {"val_loss", "eval_seconds"};
// Loss scaling's series, last.
const char* const kScaleSeries[] = {"loss_scale", "skipped"};

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
void shrink(hid_t dataset, hsize_t rows) {
  hsize_t width[2] = {0, 0};
  h5::Id space(H5Dget_space(dataset), H5Sclose);
  if (!space.valid() || H5Sget_simple_extent_dims(space.get(), width, nullptr) < 0) return;
  const hsize_t dims[2] = {rows, width[1]};
  if (H5Dset_extent(dataset, dims) >= 0) return;
  const hsize_t one_more[2] = {rows + 1, width[1]};
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

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Whether `name` (a path from `loc`) exists; false also when a group on the way does not.
bool exists(hid_t loc, const char* name) { return H5Lexists(loc, name, H5P_DEFAULT) > 0; }

// A 1-D string attribute (grid_axes); 0 elements when `values` is empty.
void writeAttr(hid_t obj, const char* name, const std::vector<std::string>& values) {
  deleteAttr(obj, name);
  auto type = stringType();
  const hsize_t n = values.size();
  auto space = h5::dataspace(H5Screate_simple(1, &n, nullptr), name);
  auto attr = h5::attribute(H5Acreate2(obj, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), name);
  std::vector<const char*> data;
  for (const auto& v : values) data.push_back(v.c_str());
  if (n > 0) h5::check(H5Awrite(attr.get(), type.get(), data.data()), concat("write attribute ", name));
}

// A fixed 1-D dataset of `n` rows (0 allowed), contiguous: the summary's columns.
void writeColumn(hid_t loc, const char* name, hid_t file_type, hid_t mem_type, hsize_t n, const void* data) {
  auto space = h5::dataspace(H5Screate_simple(1, &n, nullptr), name);
  auto ds = h5::dataset(H5Dcreate2(loc, name, file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                        concat("create dataset ", name));
  if (n > 0) {
    h5::check(H5Dwrite(ds.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), concat("write dataset ", name));
  }
}

void writeColumn(hid_t loc, const char* name, const std::vector<double>& values) {
  writeColumn(loc, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, values.size(), values.data());
}

void writeColumn(hid_t loc, const char* name, const std::vector<int64_t>& values) {
  writeColumn(loc, name, H5T_STD_I64LE, H5T_NATIVE_INT64, values.size(), values.data());
}

void writeColumn(hid_t loc, const char* name, const std::vector<std::size_t>& values) {
  writeColumn(loc, name, std::vector<int64_t>(values.begin(), values.end()));
}

void writeColumn(hid_t loc, const char* name, const std::vector<std::string>& values) {
  auto type = stringType();
  std::vector<const char*> data;
  for (const auto& v : values) data.push_back(v.c_str());
  writeColumn(loc, name, type.get(), type.get(), data.size(), data.data());
}

// /summary/<parent>/0, 1, ...: a group per item, filled by `write(group, item)`; no
// <parent> when there are no items. readSubs reads them back.
template <typename Item, typename Write>
void writeSubs(hid_t summary, const char* parent, const std::vector<Item>& items, Write write) {
  if (items.empty()) return;
  auto p = h5::group(H5Gcreate2(summary, parent, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                     concat("create group summary/", parent));
  for (std::size_t k = 0; k < items.size(); ++k) {
    const std::string name = std::to_string(k);
    auto sub = h5::group(H5Gcreate2(p.get(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                         concat("create group summary/", parent, "/", name));
    write(sub.get(), items[k]);
  }
}

// The suggestion of `method`, nullptr when it was not computed (a sweep cut short
// before its suggestions).
const finder::Suggestion* findSuggestion(const finder::SweepResult& result, finder::SuggestMethod method) {
  for (const auto& s : result.suggestions) {
    if (s.method == method) return &s;
  }
  return nullptr;
}

double suggestedLr(const finder::SweepResult& result, finder::SuggestMethod method) {
  const finder::Suggestion* s = findSuggestion(result, method);
  return s != nullptr && s->found ? s->lr : kNaN;
}

// Of several closes, the first failure's cause: `next` when `first` has none yet.
void keepFirst(h5::Cause& first, h5::Cause next) noexcept {
  if (first.text.empty()) first = std::move(next);
}

// /param_groups/<k>: attributes pattern ("" for the default group), multiplier,
// weight_decay, num_params, numel and suggested_lr (NaN until the end); dataset
// parameters (their names).
void writeParamGroups(hid_t loc, const std::vector<ParamGroupInfo>& groups) {
  auto pg = h5::group(H5Gcreate2(loc, "param_groups", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                      "create group param_groups");
  for (std::size_t k = 0; k < groups.size(); ++k) {
    const std::string name = std::to_string(k);
    auto g = h5::group(H5Gcreate2(pg.get(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                       concat("create group param_groups/", name));
    const ParamGroupInfo& info = groups[k];
    writeAttr(g.get(), "pattern", info.pattern);
    writeAttr(g.get(), "multiplier", info.multiplier);
    writeAttr(g.get(), "weight_decay", info.weight_decay);
    writeAttr(g.get(), "num_params", static_cast<int64_t>(info.names.size()));
    writeAttr(g.get(), "numel", info.numel);
    writeAttr(g.get(), "suggested_lr", kNaN);
    writeColumn(g.get(), "parameters", info.names);
  }
}

// One sweep's part of a results file, under `loc`: the file root (ResultsWriter) or
// the sweep's own group (/sweeps/<i> in a grid's file).
struct Slot {
  std::string prefix;  // "" at the root, "/sweeps/3/": names the datasets in messages
  h5::Id group;        // the sweep's group; invalid at the root
  hid_t loc = H5I_INVALID_HID;
  // Open while the sweep runs: lr, loss, loss_raw, step_seconds, loss_per_rank, then
  // group_lr when the param groups are known, and val_loss and eval_seconds in
  // validation mode.
  std::vector<h5::Id> series;
  h5::Id steps_attr;
  int world = 1;
  bool scaling = false;  // loss_scale and skipped
  hsize_t groups = 0;  // param groups: group_lr's width; 0: no group_lr
  std::vector<double> multipliers;  // each param group's multiple of the scheduled lr
  bool validating = false;
  hsize_t rows = 0;     // rows appended
  hsize_t flushed = 0;  // rows on disk as of the last flush that succeeded

  // Closes the attribute, the datasets, then the group; the first failure's cause.
  h5::Cause close() noexcept {
    h5::Cause first = steps_attr.close();
    for (auto& s : series) keepFirst(first, s.close());
    series.clear();
    keepFirst(first, group.close());
    return first;
  }
};

// What the single sweep's and the grid's writer share: the file, its flushes and their
// budget, the sweeps open in it (slots), the first failure and giving the file up, the
// rename at the end.
class ResultsFile {
 public:
  // Creates `<path>.partial`; throws IoError when it cannot. `root_sweep`: the file
  // holds one sweep at its root (failure messages then count its steps).
  void create(std::string out, bool root_sweep);
  // Starts sweep `key` under `group` (the root when invalid): its series, suggestions
  // group and attributes. No flush.
  Slot& openSlot(std::size_t key, h5::Id group, std::string prefix, const finder::SweepOptions& options,
                 const RunInfo& run, int world_size);
  Slot* findSlot(std::size_t key);
  void append(Slot& slot, const finder::StepRecord& record);  // one row; no flush
  void endSlot(Slot& slot, const finder::SweepResult& result);  // final attributes; no flush
  void closeSlot(std::size_t key);  // throws Failure when closing failed
  void flush();
  template <typename Fn>
  void guarded(Fn&& body);
  void abandon() noexcept;
  h5::Cause closeAll() noexcept;
  void closeQuietly() noexcept;  // for destructors: one warning line when closing failed
  void moveIntoPlace();          // renames `<path>.partial` to `<path>`

  std::string path;
  std::string current;
  h5::Id file;
  int fd = -1;  // the descriptor HDF5 writes through; -1 when unknown
  std::map<std::size_t, Slot> slots;  // the sweeps open
  bool root_sweep = true;
  // Bytes that flushes may still use before the free space is measured again.
  uint64_t budget = 0;
  bool out_of_room = false;  // the last flush was not tried: too little space
  std::string failure;       // set by the first failed write; the file is closed then

 private:
  void appendRow(Slot& slot, h5::Id& dataset, const char* name, const double* row, hsize_t width);
};

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

namespace {

void ResultsFile::create(std::string out, bool one_sweep) {
  path = std::move(out);
  current = partialPath(path);
  root_sweep = one_sweep;
  h5::silenceErrors();
  // At most the 1.8 file format: 1.10's superblock marks a file open for writing, and
  // after a crash HDF5 and h5py then refuse <out>.partial until someone runs h5clear.
  // The 1.8 format leaves a killed job's file readable as it is.
  auto fapl = h5::plist(H5Pcreate(H5P_FILE_ACCESS), "file access properties");
  h5::check(H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_EARLIEST, H5F_LIBVER_V18), "libver bounds");
  file = h5::file(H5Fcreate(current.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()),
                  concat("--out ", path, ": cannot create ", current));
  fd = descriptorOf(file.get());
}

// Flushes what the last calls wrote, if the file system has room for it.
//
// HDF5 1.10 does not recover from a metadata write that fails: its cache stays
// half-flushed, every later flush and the close fail too, and what reached the disk
// may be half a step. So the writer stops before a flush that might not fit, while the
// file on disk is whole. At most one new chunk per series of every open sweep and a few
// metadata blocks (B-tree nodes, the aggregators, a new group) are new in one flush.
// The free space is measured (fstatvfs) again when the flushes since the last measure
// could have used up half of it, and at least every kChunkRows flushes; a file system
// that fills faster than that, a quota or a failing disk still end in HDF5's error, and
// in abandon()'s repairs.
void ResultsFile::flush() {
  uint64_t columns = 0;
  for (const auto& [key, slot] : slots) columns += slot.series.size() + static_cast<uint64_t>(slot.world);
  const uint64_t need = kChunkRows * sizeof(double) * columns + 16384;
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
  for (auto& [key, slot] : slots) slot.flushed = slot.rows;
}

// Every call runs its HDF5 work through this: on the worker thread HDF5's printer must
// be silenced too, and after a failed write the file is given up at once (the sweep
// learns of the failure only at its next step).
template <typename Fn>
void ResultsFile::guarded(Fn&& body) {
  h5::silenceErrors();
  if (!failure.empty()) throw IoError(failure);
  try {
    body();
  } catch (const h5::Failure& e) {
    std::string progress;
    if (root_sweep) {
      const auto it = slots.find(0);
      progress = concat(" after ", it == slots.end() ? hsize_t{0} : it->second.flushed, " steps");
    }
    // The OS error is the whole story ("No space left on device"); without one, what
    // HDF5 was doing helps.
    failure = concat("--out ", path, ": cannot write ", current, progress, ": ",
                     e.cause().os_error != 0 ? e.cause().text : std::string(e.what()));
    abandon();
    throw IoError(failure);
  }
}

// After a failed write; best effort, silent, and the file is closed at the end.
// When the flush was not even tried (no room), the file on disk is as the last flush
// left it, and nothing more is written. When HDF5 failed, it may have written part of
// a step: every open sweep's datasets shrink back to the rows of the last good flush
// (dropping the rows HDF5 could not write, which would otherwise read as zeros), its
// steps_completed says so, and only then is stop_reason rewritten: each open sweep's,
// and the root's (in a single-sweep file, the same).
void ResultsFile::abandon() noexcept {
  if (file.valid() && !out_of_room) {
    for (auto& [key, slot] : slots) {
      for (auto& s : slot.series) {
        if (s.valid()) shrink(s.get(), slot.flushed);
      }
      const auto steps = static_cast<int64_t>(slot.flushed);
      if (slot.steps_attr.valid()) H5Awrite(slot.steps_attr.get(), H5T_NATIVE_INT64, &steps);
    }
    if (H5Fflush(file.get(), H5F_SCOPE_GLOBAL) >= 0) {
      try {
        const std::string error = finder::toString(finder::StopReason::kError);
        for (auto& [key, slot] : slots) {
          if (slot.group.valid()) writeAttr(slot.loc, "stop_reason", error);
        }
        writeAttr(file.get(), "stop_reason", error);
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

// Closes every open sweep, then the file; returns the first failure's cause (empty
// text: all closed).
h5::Cause ResultsFile::closeAll() noexcept {
  h5::Cause first;
  for (auto& [key, slot] : slots) keepFirst(first, slot.close());
  slots.clear();
  keepFirst(first, file.close());
  return first;
}

// Still open when the run never ended (an exception on the way): closing writes what
// HDF5 caches. One line if that fails, not one per dataset.
void ResultsFile::closeQuietly() noexcept {
  if (!file.valid()) return;
  h5::silenceErrors();
  const h5::Cause failed = closeAll();
  if (!failed.text.empty()) {
    std::fprintf(stderr, "lrfind: warning: closing %s failed: %s\n", current.c_str(), failed.text.c_str());
  }
}

void ResultsFile::moveIntoPlace() {
  std::error_code ec;
  fs::rename(current, path, ec);
  if (ec) throw IoError(concat("--out ", path, ": cannot move ", current, " into place: ", ec.message()));
  current = path;
}

Slot* ResultsFile::findSlot(std::size_t key) {
  const auto it = slots.find(key);
  return it == slots.end() ? nullptr : &it->second;
}

Slot& ResultsFile::openSlot(std::size_t key, h5::Id group, std::string prefix, const finder::SweepOptions& options,
                            const RunInfo& run, int world_size) {
  Slot& slot = slots[key];
  slot.group = std::move(group);
  slot.loc = slot.group.valid() ? slot.group.get() : file.get();
  slot.prefix = std::move(prefix);
  slot.world = world_size;
  const hid_t f = slot.loc;
  slot.series.clear();
  for (const char* name : kSeries) slot.series.push_back(createSeries(f, name, 0));
  slot.series.push_back(createSeries(f, "loss_per_rank", static_cast<hsize_t>(slot.world)));
  slot.groups = run.param_groups.size();
  slot.multipliers.clear();
  for (const auto& g : run.param_groups) slot.multipliers.push_back(g.multiplier);
  if (slot.groups > 0) {
    slot.series.push_back(createSeries(f, "group_lr", slot.groups));
    writeParamGroups(f, run.param_groups);
  }
  slot.validating = !run.val_data.empty();
  if (slot.validating) {
    for (const char* name : kValSeries) slot.series.push_back(createSeries(f, name, 0));
  }
  slot.scaling = options.lossScaling();
  if (slot.scaling) {
    for (const char* name : kScaleSeries) slot.series.push_back(createSeries(f, name, 0));
  }
  h5::group(H5Gcreate2(f, "suggestions", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "create group suggestions");

  writeAttr(f, "lrfind_version", std::string(LRFIND_VERSION));
  writeAttr(f, "min_lr", options.min_lr);
  writeAttr(f, "max_lr", options.max_lr);
  writeAttr(f, "num_training", options.num_training);
  writeAttr(f, "mode", std::string(finder::toString(options.mode)));
  writeAttr(f, "early_stop_threshold", options.early_stop_threshold.value_or(kNaN));
  writeAttr(f, "beta", options.beta);
  writeAttr(f, "skip_begin", options.skip_begin);
  writeAttr(f, "skip_end", options.skip_end);
  writeAttr(f, "accumulate", options.accumulate);
  writeAttr(f, "suggest_method", std::string(finder::toString(options.suggest)));
  writeAttr(f, "world_size", static_cast<int64_t>(slot.world));
  writeAttr(f, "batch_size", run.batch_size);
  writeAttr(f, "global_batch_size", run.global_batch_size);
  writeAttr(f, "optimizer", run.optimizer);
  writeAttr(f, "loss_fn", run.loss_fn);
  writeAttr(f, "model", run.model);
  writeAttr(f, "data", run.data);
  writeAttr(f, "device", run.device);
  writeAttr(f, "labels", run.labels);
  writeAttr(f, "input_type", run.input_type);
  writeAttr(f, "input_scale", run.input_scale);
  writeAttr(f, "normalize", run.normalize);
  writeAttr(f, "channels_last", static_cast<int64_t>(run.channels_last));
  writeAttr(f, "seed", run.seed);
  writeAttr(f, "monitor", std::string(finder::toString(options.monitor)));
  writeAttr(f, "precision", std::string(finder::toString(options.precision)));
  if (slot.validating) {
    writeAttr(f, "val_data", run.val_data);
    writeAttr(f, "val_labels", run.val_labels);
    writeAttr(f, "val_samples", run.val_samples);
    writeAttr(f, "val_batches", run.val_batches);
  }
  if (!run.config.empty()) writeAttr(f, "config", run.config);
  writeAttr(f, "steps_completed", int64_t{0});
  writeAttr(f, "stop_reason", std::string(finder::toString(finder::StopReason::kRunning)));
  writeAttr(f, "complete", int64_t{0});
  writeAttr(f, "suggested_lr", kNaN);
  slot.steps_attr = h5::attribute(H5Aopen(f, "steps_completed", H5P_DEFAULT), "open attribute steps_completed");
  return slot;
}

void ResultsFile::appendRow(Slot& slot, h5::Id& ds, const char* name, const double* row, hsize_t width) {
  // Runs every step: no allocation, messages built only on failure.
  const int rank = width == 0 ? 1 : 2;
  const hsize_t rows = slot.rows;
  hsize_t new_dims[2] = {rows + 1, width};
  LRFIND_H5_CHECK(H5Dset_extent(ds.get(), new_dims), "extend dataset ", slot.prefix, name, " in ", current);
  h5::Id file_space(H5Dget_space(ds.get()), H5Sclose);
  LRFIND_H5_CHECK(file_space.get(), "dataspace of ", slot.prefix, name, " in ", current);
  hsize_t start[2] = {rows, 0};
  hsize_t count[2] = {1, std::max<hsize_t>(width, 1)};
  LRFIND_H5_CHECK(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start, nullptr, count, nullptr),
                  "select row of ", slot.prefix, name);
  h5::Id mem_space(H5Screate_simple(rank, count, nullptr), H5Sclose);
  LRFIND_H5_CHECK(mem_space.get(), "memory dataspace for ", slot.prefix, name);
  LRFIND_H5_CHECK(H5Dwrite(ds.get(), H5T_NATIVE_DOUBLE, mem_space.get(), file_space.get(), H5P_DEFAULT, row),
                  "write dataset ", slot.prefix, name, " in ", current);
}

void ResultsFile::append(Slot& slot, const finder::StepRecord& r) {
  LRFIND_CHECK(r.loss_per_rank.size() == static_cast<std::size_t>(slot.world), "step ", r.step, " of ",
               slot.prefix.empty() ? std::string("the sweep") : slot.prefix, " has ", r.loss_per_rank.size(),
               " losses per rank, the sweep has ", slot.world, " ranks");
  const double values[] = {r.lr, r.loss, r.loss_raw, r.seconds};
  std::size_t next = 0;
  for (std::size_t i = 0; i < std::size(kSeries); ++i) appendRow(slot, slot.series[next++], kSeries[i], &values[i], 0);
  appendRow(slot, slot.series[next++], "loss_per_rank", r.loss_per_rank.data(), static_cast<hsize_t>(slot.world));
  if (slot.groups > 0) {
    LRFIND_CHECK(r.group_lr.size() == slot.groups, "step ", r.step, " has ", r.group_lr.size(),
                 " param group lrs, the sweep has ", slot.groups, " groups");
    appendRow(slot, slot.series[next++], "group_lr", r.group_lr.data(), slot.groups);
  }
  if (slot.validating) {
    const double val_values[] = {r.val_loss, r.eval_seconds};
    for (std::size_t i = 0; i < std::size(kValSeries); ++i) {
      appendRow(slot, slot.series[next++], kValSeries[i], &val_values[i], 0);
    }
  }
  if (slot.scaling) {
    const double scale_values[] = {r.loss_scale, r.skipped ? 1.0 : 0.0};
    for (std::size_t i = 0; i < std::size(kScaleSeries); ++i) {
      appendRow(slot, slot.series[next++], kScaleSeries[i], &scale_values[i], 0);
    }
  }
  ++slot.rows;
  const auto steps = static_cast<int64_t>(slot.rows);
  LRFIND_H5_CHECK(H5Awrite(slot.steps_attr.get(), H5T_NATIVE_INT64, &steps), "write ", slot.prefix,
                  "steps_completed in ", current);
}

void ResultsFile::endSlot(Slot& slot, const finder::SweepResult& result) {
  const hid_t f = slot.loc;
  {
    auto g = h5::group(H5Gopen2(f, "suggestions", H5P_DEFAULT), "open group suggestions");
    for (const auto& s : result.suggestions) {
      const std::string m = finder::toString(s.method);
      writeAttr(g.get(), (m + "_lr").c_str(), s.found ? s.lr : kNaN);
      writeAttr(g.get(), (m + "_index").c_str(), s.found ? s.index : int64_t{-1});
    }
  }
  // An error, an interruption or a timeout leaves complete=0.
  const bool ended = finder::endedNormally(result.stop_reason);
  writeAttr(f, "suggested_lr", suggestedLr(result, result.method));
  writeAttr(f, "steps_completed", result.stepsCompleted());
  writeAttr(f, "stop_reason", std::string(finder::toString(result.stop_reason)));
  writeAttr(f, "stop_rule", result.stop_test);
  writeAttr(f, "stop_scale", result.stop_scale);
  writeAttr(f, "suggestion_warning", result.suggestion_warning);
  if (slot.groups > 0) {
    // Each group's lr at the suggestion: its multiple of the suggested lr.
    auto pg = h5::group(H5Gopen2(f, "param_groups", H5P_DEFAULT), "open group param_groups");
    const double suggested = suggestedLr(result, result.method);
    for (hsize_t k = 0; k < slot.groups; ++k) {
      auto g = h5::group(H5Gopen2(pg.get(), std::to_string(k).c_str(), H5P_DEFAULT), "open a param group");
      writeAttr(g.get(), "suggested_lr", suggested * slot.multipliers[k]);
    }
  }
  if (!result.error.empty()) writeAttr(f, "error", result.error);
  writeAttr(f, "complete", int64_t{ended ? 1 : 0});
}

void ResultsFile::closeSlot(std::size_t key) {
  const auto it = slots.find(key);
  if (it == slots.end()) return;
  h5::Cause failed = it->second.close();
  slots.erase(it);
  if (!failed.text.empty()) throw h5::Failure(concat("close sweep ", key, " in ", current), std::move(failed));
}

}  // namespace

struct ResultsWriter::Impl : ResultsFile {
  RunInfo info;
  static constexpr std::size_t kSweep = 0;  // the one slot, at the root

  // The open sweep; `call` before onStart is the caller's bug.
  Slot& sweep(const char* call) {
    Slot* slot = findSlot(kSweep);
    LRFIND_CHECK(slot != nullptr, call, " before onStart");
    return *slot;
  }
};

ResultsWriter::ResultsWriter(std::string path, const RunInfo& info) : impl_(std::make_unique<Impl>()) {
  impl_->info = info;
  impl_->create(std::move(path), true);
}

ResultsWriter::~ResultsWriter() { impl_->closeQuietly(); }

const std::string& ResultsWriter::currentPath() const { return impl_->current; }

void ResultsWriter::onStart(const finder::SweepOptions& options, int world_size) {
  Impl& d = *impl_;
  d.guarded([&] {
    d.openSlot(Impl::kSweep, h5::Id(), "", options, d.info, world_size);
    d.flush();
  });
}

void ResultsWriter::onStep(const finder::StepRecord& r) {
  Impl& d = *impl_;
  d.guarded([&] {
    d.append(d.sweep("onStep"), r);
    d.flush();
  });
}

void ResultsWriter::onEnd(const finder::SweepResult& result) {
  Impl& d = *impl_;
  d.guarded([&] {
    d.endSlot(d.sweep("onEnd"), result);
    d.flush();
    h5::Cause failed = d.closeAll();
    if (!failed.text.empty()) throw h5::Failure(concat("close ", d.current), std::move(failed));
  });
  // An error, an interruption or a timeout leaves <out>.partial.
  if (finder::endedNormally(result.stop_reason)) d.moveIntoPlace();
}

struct GridResultsWriter::Impl : ResultsFile {
  GridFileInfo info;
  std::size_t num_sweeps = 0;
  bool finished = false;

  std::string sweepName(std::size_t index) const { return concat("/sweeps/", index); }
  Slot& start(const GridSweep& sweep);
  void writeSummary(const std::vector<GridSweep>& sweeps, const GridSummary& summary);
};

GridResultsWriter::GridResultsWriter(std::string path, const GridFileInfo& info) : impl_(std::make_unique<Impl>()) {
  Impl& d = *impl_;
  d.info = info;
  d.num_sweeps = gridSize(info.axes);
  d.create(std::move(path), false);
  d.guarded([&] {
    const hid_t f = d.file.get();
    std::vector<std::string> names;
    for (const auto& axis : info.axes) names.push_back(axis.name);
    writeAttr(f, "lrfind_version", std::string(LRFIND_VERSION));
    writeAttr(f, "grid_axes", names);
    writeAttr(f, "num_sweeps", static_cast<int64_t>(d.num_sweeps));
    writeAttr(f, "world_size", static_cast<int64_t>(info.world_size));
    writeAttr(f, "ranks_per_sweep", static_cast<int64_t>(info.ranks_per_sweep));
    writeAttr(f, "groups", static_cast<int64_t>(info.groups));
    if (!info.config.empty()) writeAttr(f, "config", info.config);
    writeAttr(f, "complete", int64_t{0});
    writeAttr(f, "stop_reason", std::string(finder::toString(finder::StopReason::kRunning)));
    h5::group(H5Gcreate2(f, "sweeps", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "create group sweeps");
    d.flush();
  });
}

GridResultsWriter::~GridResultsWriter() { impl_->closeQuietly(); }

const std::string& GridResultsWriter::currentPath() const { return impl_->current; }

Slot& GridResultsWriter::Impl::start(const GridSweep& sweep) {
  LRFIND_CHECK(!finished, "startSweep after finish");
  LRFIND_CHECK(sweep.index < num_sweeps, "sweep ", sweep.index, " is not in a grid of ", num_sweeps);
  const std::string name = sweepName(sweep.index);
  const htri_t there = H5Lexists(file.get(), name.c_str(), H5P_DEFAULT);
  LRFIND_H5_CHECK(there, "look up ", name, " in ", current);
  LRFIND_CHECK(there == 0, "sweep ", sweep.index, " started twice");
  auto group = h5::group(H5Gcreate2(file.get(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                         concat("create group ", name));
  Slot& slot = openSlot(sweep.index, std::move(group), name + "/", sweep.options, sweep.info, sweep.result.world_size);
  for (const auto& [axis, value] : sweep.values) writeAttr(slot.loc, ("grid_" + axis).c_str(), value);
  writeAttr(slot.loc, "group", static_cast<int64_t>(sweep.group));
  writeAttr(slot.loc, "started_at", sweep.started_at);
  return slot;
}

void GridResultsWriter::startSweep(const GridSweep& sweep) {
  Impl& d = *impl_;
  d.guarded([&] {
    d.start(sweep);
    d.flush();
  });
}

void GridResultsWriter::step(std::size_t index, const finder::StepRecord& record) {
  Impl& d = *impl_;
  d.guarded([&] {
    Slot* slot = d.findSlot(index);
    LRFIND_CHECK(slot != nullptr, "step of sweep ", index, ", which is not running");
    d.append(*slot, record);
    d.flush();
  });
}

void GridResultsWriter::endSweep(const GridSweep& sweep) {
  Impl& d = *impl_;
  d.guarded([&] {
    Slot* slot = d.findSlot(sweep.index);
    if (slot == nullptr) {
      const std::string name = d.sweepName(sweep.index);
      LRFIND_CHECK(!exists(d.file.get(), name.c_str()), "sweep ", sweep.index, " ended twice");
      // A sweep that failed before it started is recorded all the same.
      slot = &d.start(sweep);
    }
    writeAttr(slot->loc, "ended_at", sweep.ended_at);
    d.endSlot(*slot, sweep.result);
    d.flush();
    d.closeSlot(sweep.index);
  });
}

void GridResultsWriter::Impl::writeSummary(const std::vector<GridSweep>& given, const GridSummary& summary) {
  std::vector<const GridSweep*> sweeps;
  for (const auto& s : given) sweeps.push_back(&s);
  std::stable_sort(sweeps.begin(), sweeps.end(),
                   [](const GridSweep* a, const GridSweep* b) { return a->index < b->index; });
  auto g = h5::group(H5Gcreate2(file.get(), "summary", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "create group summary");
  const hid_t loc = g.get();
  auto ints = [&](const char* name, auto of) {
    std::vector<int64_t> column;
    for (const GridSweep* s : sweeps) column.push_back(static_cast<int64_t>(of(*s)));
    writeColumn(loc, name, column);
  };
  auto doubles = [&](const char* name, auto of) {
    std::vector<double> column;
    for (const GridSweep* s : sweeps) column.push_back(of(*s));
    writeColumn(loc, name, column);
  };
  auto strings = [&](const char* name, auto of) {
    std::vector<std::string> column;
    for (const GridSweep* s : sweeps) column.push_back(of(*s));
    writeColumn(loc, name, column);
  };
  ints("index", [](const GridSweep& s) { return s.index; });
  for (const auto& axis : info.axes) {
    strings(axis.name.c_str(), [&](const GridSweep& s) {
      for (const auto& [name, value] : s.values) {
        if (name == axis.name) return value;
      }
      return std::string();
    });
  }
  doubles("suggested_lr", [](const GridSweep& s) { return suggestedLr(s.result, s.result.method); });
  for (const finder::SuggestMethod m : finder::allSuggestMethods()) {
    doubles(concat(finder::toString(m), "_lr").c_str(), [&](const GridSweep& s) { return suggestedLr(s.result, m); });
  }
  strings("stop_reason", [](const GridSweep& s) { return std::string(finder::toString(s.result.stop_reason)); });
  ints("steps_completed", [](const GridSweep& s) { return s.result.stepsCompleted(); });
  ints("group", [](const GridSweep& s) { return s.group; });
  ints("global_batch_size", [](const GridSweep& s) { return s.info.global_batch_size; });
  doubles("started_at", [](const GridSweep& s) { return s.started_at; });
  doubles("ended_at", [](const GridSweep& s) { return s.ended_at; });

  writeSubs(loc, "seed_groups", summary.seed_groups, [](hid_t at, const SeedGroup& sg) {
    writeAttr(at, "label", sg.label);
    writeAttr(at, "median_lr", sg.median_lr);
    writeAttr(at, "log10_lr_min", sg.log10_min);
    writeAttr(at, "log10_lr_max", sg.log10_max);
    writeAttr(at, "log10_lr_iqr", sg.log10_iqr);
    writeAttr(at, "found", static_cast<int64_t>(sg.found));
    writeColumn(at, "sweeps", sg.sweeps);
    writeColumn(at, "lr", sg.lr);
    writeColumn(at, "loss_min", sg.loss_min);
    writeColumn(at, "loss_max", sg.loss_max);
    writeColumn(at, "loss_median", sg.loss_median);
  });
  writeSubs(loc, "batch_scaling", summary.batch_fits, [](hid_t at, const BatchFit& fit) {
    writeAttr(at, "label", fit.label);
    writeAttr(at, "alpha", fit.alpha);
    writeAttr(at, "intercept", fit.intercept);
    writeAttr(at, "residual", fit.residual);
    writeColumn(at, "sweeps", fit.sweeps);
    writeColumn(at, "batch", fit.batch);
    writeColumn(at, "lr", fit.lr);
  });
}

void GridResultsWriter::finish(const std::vector<GridSweep>& sweeps, const GridSummary& summary,
                               finder::StopReason stop, const std::string& error) {
  Impl& d = *impl_;
  const bool complete = stop == finder::StopReason::kCompleted;
  d.guarded([&] {
    LRFIND_CHECK(!d.finished, "finish called twice");
    d.writeSummary(sweeps, summary);
    const hid_t f = d.file.get();
    writeAttr(f, "stop_reason", std::string(finder::toString(stop)));
    if (!error.empty()) writeAttr(f, "error", error);
    writeAttr(f, "complete", int64_t{complete ? 1 : 0});
    d.flush();
    d.finished = true;
    h5::Cause failed = d.closeAll();
    if (!failed.text.empty()) throw h5::Failure(concat("close ", d.current), std::move(failed));
  });
  if (complete) d.moveIntoPlace();
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

// The variable-length strings of `space` (a dataset's or an attribute's, `name`), read
// by `read(memory type, buffer)`, copied and freed.
template <typename Read>
std::vector<std::string> readStrings(hid_t space, const char* name, Read read) {
  const hssize_t n = H5Sget_simple_extent_npoints(space);
  h5::check(static_cast<herr_t>(n < 0 ? -1 : 0), concat("dataspace of ", name));
  std::vector<char*> raw(static_cast<std::size_t>(n), nullptr);
  if (n > 0) {
    auto mem = stringType();
    read(mem.get(), raw.data());
  }
  std::vector<std::string> out;
  for (char* text : raw) {
    out.emplace_back(text != nullptr ? text : "");
    H5free_memory(text);
  }
  return out;
}

std::vector<std::string> readStringColumn(hid_t loc, const char* name) {
  auto ds = h5::dataset(H5Dopen2(loc, name, H5P_DEFAULT), concat("open dataset ", name));
  auto space = h5::dataspace(H5Dget_space(ds.get()), name);
  return readStrings(space.get(), name, [&](hid_t mem, char** raw) {
    h5::check(H5Dread(ds.get(), mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw), concat("read dataset ", name));
  });
}

std::vector<std::string> readStringsAttr(hid_t obj, const char* name) {
  auto attr = h5::attribute(H5Aopen(obj, name, H5P_DEFAULT), name);
  auto space = h5::dataspace(H5Aget_space(attr.get()), name);
  return readStrings(space.get(), name, [&](hid_t mem, char** raw) {
    h5::check(H5Aread(attr.get(), mem, raw), concat("read attribute ", name));
  });
}

using AttrMaps = std::pair<std::map<std::string, double>*, std::map<std::string, std::string>*>;

// A scalar attribute into the maps; arrays (grid_axes) are read by name instead.
void readAttr(hid_t obj, const char* name, AttrMaps* out) {
  auto attr = h5::attribute(H5Aopen(obj, name, H5P_DEFAULT), name);
  auto space = h5::dataspace(H5Aget_space(attr.get()), name);
  if (H5Sget_simple_extent_type(space.get()) != H5S_SCALAR) return;
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

void readAttrs(hid_t obj, std::map<std::string, double>* numbers, std::map<std::string, std::string>* strings,
               const std::string& what) {
  AttrMaps maps(numbers, strings);
  h5::check(H5Aiterate2(obj, H5_INDEX_NAME, H5_ITER_INC, nullptr, collectAttr, &maps), concat("attributes of ", what));
}

// The names of the links in group `g`, in name order.
std::vector<std::string> linkNames(hid_t g, const std::string& what) {
  H5G_info_t info{};
  h5::check(H5Gget_info(g, &info), concat("list ", what));
  std::vector<std::string> names;
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    const ssize_t size = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    h5::check(static_cast<herr_t>(size < 0 ? -1 : 0), concat("list ", what));
    std::string name(static_cast<std::size_t>(size) + 1, '\0');
    h5::check(static_cast<herr_t>(
                  H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), name.size(), H5P_DEFAULT) < 0
                      ? -1
                      : 0),
              concat("list ", what));
    name.resize(static_cast<std::size_t>(size));
    names.push_back(std::move(name));
  }
  return names;
}

H5I_type_t objectType(hid_t loc, const std::string& name) {
  h5::Id object(h5::checkId(H5Oopen(loc, name.c_str(), H5P_DEFAULT), concat("open ", name)), H5Oclose);
  return H5Iget_type(object.get());
}

bool isStringDataset(hid_t loc, const std::string& name) {
  auto ds = h5::dataset(H5Dopen2(loc, name.c_str(), H5P_DEFAULT), concat("open dataset ", name));
  auto type = h5::datatype(H5Dget_type(ds.get()), name);
  return H5Tget_class(type.get()) == H5T_STRING;
}

ResultsData readSweep(hid_t loc, const std::string& where) {
  ResultsData d;
  d.lr = readSeries(loc, "lr", nullptr);
  d.loss = readSeries(loc, "loss", nullptr);
  d.loss_raw = readSeries(loc, "loss_raw", nullptr);
  d.step_seconds = readSeries(loc, "step_seconds", nullptr);
  if (exists(loc, "val_loss")) {
    d.val_loss = readSeries(loc, "val_loss", nullptr);
    d.eval_seconds = readSeries(loc, "eval_seconds", nullptr);
  }
  if (exists(loc, "loss_scale")) {
    d.loss_scale = readSeries(loc, "loss_scale", nullptr);
    d.skipped = readSeries(loc, "skipped", nullptr);
  }
  auto rows = [&](const char* name) {
    hsize_t width = 1;
    const auto flat = readSeries(loc, name, &width);
    std::vector<std::vector<double>> out;
    for (std::size_t i = 0; i + width <= flat.size(); i += width) out.emplace_back(flat.begin() + i, flat.begin() + i + width);
    return out;
  };
  d.loss_per_rank = rows("loss_per_rank");
  if (exists(loc, "param_groups")) {
    d.group_lr = rows("group_lr");
    auto pg = h5::group(H5Gopen2(loc, "param_groups", H5P_DEFAULT), "open group param_groups");
    for (std::size_t k = 0; exists(pg.get(), std::to_string(k).c_str()); ++k) {
      const std::string at = concat("param_groups/", k);
      auto g = h5::group(H5Gopen2(pg.get(), std::to_string(k).c_str(), H5P_DEFAULT), concat("open group ", at));
      ResultsData::ParamGroup group;
      readAttrs(g.get(), &group.numbers, &group.strings, at);
      group.parameters = readStringColumn(g.get(), "parameters");
      d.param_groups.push_back(std::move(group));
    }
  }
  readAttrs(loc, &d.numbers, &d.strings, where);
  auto g = h5::group(H5Gopen2(loc, "suggestions", H5P_DEFAULT), "open group suggestions");
  readAttrs(g.get(), &d.suggestions, nullptr, "suggestions");
  return d;
}

// /summary/<parent>/0, 1, ...: their attributes and datasets.
std::vector<GridResultsData::Sub> readSubs(hid_t summary, const char* parent) {
  std::vector<GridResultsData::Sub> subs;
  if (!exists(summary, parent)) return subs;
  auto p = h5::group(H5Gopen2(summary, parent, H5P_DEFAULT), concat("open group summary/", parent));
  for (std::size_t k = 0; exists(p.get(), std::to_string(k).c_str()); ++k) {
    const std::string where = concat("summary/", parent, "/", k);
    auto g = h5::group(H5Gopen2(p.get(), std::to_string(k).c_str(), H5P_DEFAULT), concat("open group ", where));
    GridResultsData::Sub sub;
    readAttrs(g.get(), &sub.numbers, &sub.strings, where);
    for (const auto& name : linkNames(g.get(), where)) {
      if (objectType(g.get(), name) == H5I_DATASET) sub.series[name] = readSeries(g.get(), name.c_str(), nullptr);
    }
    subs.push_back(std::move(sub));
  }
  return subs;
}

}  // namespace

ResultsData readResults(const std::string& path, const std::string& group) {
  h5::silenceErrors();
  auto file = h5::file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), concat("open ", path));
  auto g = h5::group(H5Gopen2(file.get(), group.c_str(), H5P_DEFAULT), concat("open group ", group, " in ", path));
  return readSweep(g.get(), group);
}

GridResultsData readGridResults(const std::string& path) {
  h5::silenceErrors();
  auto file = h5::file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), concat("open ", path));
  const hid_t f = file.get();
  GridResultsData d;
  readAttrs(f, &d.numbers, &d.strings, "/");
  if (H5Aexists(f, "grid_axes") > 0) d.axes = readStringsAttr(f, "grid_axes");
  if (exists(f, "sweeps")) {
    auto sweeps = h5::group(H5Gopen2(f, "sweeps", H5P_DEFAULT), concat("open group /sweeps in ", path));
    for (const auto& name : linkNames(sweeps.get(), "/sweeps")) {
      if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
      auto g = h5::group(H5Gopen2(sweeps.get(), name.c_str(), H5P_DEFAULT), concat("open group /sweeps/", name));
      d.sweeps[std::stoul(name)] = readSweep(g.get(), "/sweeps/" + name);
    }
  }
  if (exists(f, "summary")) {
    auto summary = h5::group(H5Gopen2(f, "summary", H5P_DEFAULT), concat("open group /summary in ", path));
    const hid_t s = summary.get();
    for (const auto& name : linkNames(s, "/summary")) {
      if (objectType(s, name) != H5I_DATASET) continue;
      if (isStringDataset(s, name)) {
        d.summary_strings[name] = readStringColumn(s, name.c_str());
      } else {
        d.summary_numbers[name] = readSeries(s, name.c_str(), nullptr);
      }
    }
    d.seed_groups = readSubs(s, "seed_groups");
    d.batch_scaling = readSubs(s, "batch_scaling");
  }
  return d;
}

}  // namespace lrfind::runtime
