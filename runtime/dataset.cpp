#include "runtime/dataset.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <chrono>
#include <numeric>
#include <random>
#include <utility>

#include <ATen/ATen.h>

#include "common/error.h"
#include "runtime/hdf5_handle.h"

namespace lrfind::runtime {

int64_t Dataset::localRow(int64_t i) const {
  if (rows.empty()) {
    LRFIND_CHECK(i >= 0 && i < size(), "sample ", i, " outside ", size());
    return i;
  }
  const auto it = std::lower_bound(rows.begin(), rows.end(), i);
  LRFIND_CHECK(it != rows.end() && *it == i, "sample ", i, " was not read on this rank");
  return it - rows.begin();
}

int64_t Dataset::numClasses() const {
  LRFIND_CHECK(has_labels, "numClasses() of a dataset without labels");
  return y.max().item<int64_t>() + 1;
}

std::optional<SyntheticSpec> syntheticSpec(const std::string& name) {
  if (name == "synthetic") return SyntheticSpec{};
  if (name == "synthetic-images") return SyntheticSpec{4096, 16 * 16, 10, 16};
  return std::nullopt;
}

Dataset makeSynthetic(uint64_t seed, const SyntheticSpec& spec) {
  LRFIND_CHECK(spec.samples > 0 && spec.features > 0 && spec.classes > 1, "bad synthetic spec");
  LRFIND_CHECK(spec.image_side == 0 || spec.image_side * spec.image_side == spec.features,
               "synthetic images need features = side * side");
  // std::normal_distribution differs between standard libraries; Box-Muller over the
  // fully specified mt19937_64 gives the same data on every platform.
  std::mt19937_64 rng(seed ^ 0x6c7266696e64ULL);
  auto uniform = [&] { return (static_cast<double>(rng() >> 11) + 0.5) * 0x1.0p-53; };
  auto normal = [&] {
    return std::sqrt(-2.0 * std::log(uniform())) * std::cos(2.0 * M_PI * uniform());
  };
  std::vector<float> centers(spec.classes * spec.features);
  for (auto& c : centers) c = static_cast<float>(1.5 * normal());
  Dataset d;
  d.source = "synthetic";
  d.total = spec.samples;
  d.x = at::empty({spec.samples, spec.features}, at::kFloat);
  d.y = at::empty({spec.samples}, at::kLong);
  auto* x = d.x.data_ptr<float>();
  auto* y = d.y.data_ptr<int64_t>();
  for (int64_t i = 0; i < spec.samples; ++i) {
    const int64_t label = static_cast<int64_t>(rng() % static_cast<uint64_t>(spec.classes));
    y[i] = label;
    for (int64_t f = 0; f < spec.features; ++f) {
      x[i * spec.features + f] = centers[label * spec.features + f] + static_cast<float>(normal());
    }
  }
  if (spec.image_side > 0) {
    d.source = "synthetic-images";
    d.x = d.x.view({spec.samples, spec.image_side, spec.image_side});
  }
  d.stored = d.x;
  return d;
}

namespace {

std::string shapeString(const std::vector<hsize_t>& dims) {
  std::string s = "[";
  for (std::size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

// The names of the links in a group.
std::vector<std::string> memberNames(hid_t group) {
  std::vector<std::string> names;
  H5Literate(
      group, H5_INDEX_NAME, H5_ITER_NATIVE, nullptr,
      [](hid_t, const char* name, const H5L_info_t*, void* out) -> herr_t {
        static_cast<std::vector<std::string>*>(out)->emplace_back(name);
        return 0;
      },
      &names);
  H5Eclear2(H5E_DEFAULT);
  return names;
}

constexpr std::size_t kListed = 20;  // names a message lists at most

// The paths of the datasets in a file at every depth ("x", "train/images"), at most
// kListed + 1 of them (one more tells that the list goes on).
std::vector<std::string> datasetPaths(hid_t file) {
  std::vector<std::string> paths;
  H5Ovisit2(
      file, H5_INDEX_NAME, H5_ITER_NATIVE,
      [](hid_t, const char* name, const H5O_info_t* info, void* out) -> herr_t {
        auto* list = static_cast<std::vector<std::string>*>(out);
        if (info->type == H5O_TYPE_DATASET) list->emplace_back(name);
        return list->size() > kListed ? 1 : 0;  // enough: stop the walk
      },
      &paths, H5O_INFO_BASIC);
  H5Eclear2(H5E_DEFAULT);
  return paths;
}

// "a, b, c" for a message: at most `shown` names, then that there are more.
std::string listed(const std::vector<std::string>& names, std::size_t shown = 10) {
  std::string text;
  for (std::size_t i = 0; i < names.size() && i < shown; ++i) text += (i ? ", " : "") + names[i];
  if (names.size() > shown) text += concat(" and ", names.size() - shown, " more");
  return text.empty() ? "nothing" : text;
}

// numpy's name for an HDF5 type ("float16", "int32", "uint8", "bool"), or its class and
// size for the types that have no numpy counterpart.
std::string typeName(hid_t type) {
  const H5T_class_t type_class = H5Tget_class(type);
  const std::size_t bits = H5Tget_size(type) * 8;
  switch (type_class) {
    case H5T_FLOAT: return concat("float", bits);
    case H5T_INTEGER: return concat(H5Tget_sign(type) == H5T_SGN_NONE ? "uint" : "int", bits);
    case H5T_STRING: return "strings";
    case H5T_COMPOUND: return concat("a compound type of ", bits / 8, " bytes");
    case H5T_ENUM: {
      // h5py writes numpy's bool as an enum {FALSE = 0, TRUE = 1} over int8.
      char* first = H5Tget_nmembers(type) == 2 ? H5Tget_member_name(type, 0) : nullptr;
      char* second = first != nullptr ? H5Tget_member_name(type, 1) : nullptr;
      const bool is_bool = first != nullptr && second != nullptr && std::string(first) == "FALSE" &&
                           std::string(second) == "TRUE";
      H5free_memory(first);
      H5free_memory(second);
      H5Eclear2(H5E_DEFAULT);
      return is_bool ? "bool" : concat("an enum of ", bits / 8, " bytes");
    }
    default: return concat("a non-numeric type of ", bits / 8, " bytes");
  }
}

// The name of a filter for a message: HDF5's own, else the registered id's.
std::string filterName(H5Z_filter_t id, const char* stored_name) {
  switch (id) {
    case 32000: return "lzf";
    case 32001: return "blosc";
    case 32004: return "lz4";
    case 32008: return "bitshuffle";
    case 32013: return "zfp";
    case 32015: return "zstd";
    case 32026: return "blosc2";
    case 307: return "bzip2";
    default: return stored_name[0] != '\0' ? std::string(stored_name) : concat("filter ", id);
  }
}

struct RawDataset {
  hid_t file = H5I_INVALID_HID;  // not owned
  std::string key;
  std::string where;  // "--data f.h5: dataset 'x'"
  h5::Id id;
  H5T_class_t type_class = H5T_NO_CLASS;
  std::size_t type_size = 0;
  bool is_signed = true;
  std::string type_name;  // as numpy says it: "float16", "uint8", ...
  std::vector<hsize_t> dims;
  std::vector<hsize_t> chunk;  // empty: not chunked
};

// A compressed dataset needs every filter of its pipeline; HDF5 would only say "read
// failed" when it meets the first chunk.
void checkFilters(const RawDataset& raw) {
  h5::Id dcpl(H5Dget_create_plist(raw.id.get()), H5Pclose);
  if (!dcpl.valid()) {
    H5Eclear2(H5E_DEFAULT);
    return;
  }
  const int filters = H5Pget_nfilters(dcpl.get());
  for (int i = 0; i < filters; ++i) {
    unsigned flags = 0, config = 0;
    std::size_t values = 0;
    char name[64] = {0};
    const H5Z_filter_t id = H5Pget_filter2(dcpl.get(), static_cast<unsigned>(i), &flags, &values, nullptr,
                                           sizeof name, name, &config);
    if (id < 0) continue;
    LRFIND_INPUT_CHECK(H5Zfilter_avail(id) > 0, raw.where, " is compressed with the ", filterName(id, name),
                       " filter (id ", id, "), which this HDF5 cannot decode; rewrite the file with gzip: "
                       "h5repack -f GZIP=4 in.h5 out.h5");
  }
  H5Eclear2(H5E_DEFAULT);
}

// `flag` names the file in messages ("--data", "--labels"), `key_flag` the dataset.
RawDataset openDataset(hid_t file, const std::string& flag, const std::string& path, const std::string& key,
                       const std::string& key_flag) {
  const std::string where = concat(flag, " ", path, ": dataset '", key, "'");
  if (H5Lexists(file, key.c_str(), H5P_DEFAULT) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    const std::vector<std::string> paths = datasetPaths(file);
    std::string has = listed(paths, kListed);
    if (paths.size() > kListed) has = has.substr(0, has.rfind(" and ")) + " and more";
    throw InputError(concat(where, " not found (the file has: ", has, "); name the right one with ", key_flag));
  }
  // A group, a named datatype or a dangling link under that name is bad input too; only
  // an OS error is an I/O failure.
  RawDataset raw;
  raw.file = file;
  raw.key = key;
  raw.where = where;
  raw.id = h5::Id(H5Oopen(file, key.c_str(), H5P_DEFAULT), H5Oclose);
  if (!raw.id.valid()) {
    h5::Cause cause = h5::takeCause();
    if (cause.os_error != 0) throw h5::Failure(where, std::move(cause));
    throw InputError(concat(flag, " ", path, ": '", key, "' cannot be opened (", cause.text, "); name a dataset with ",
                            key_flag));
  }
  const H5I_type_t kind = H5Iget_type(raw.id.get());
  if (kind == H5I_GROUP) {
    const std::vector<std::string> members = memberNames(raw.id.get());
    throw InputError(concat(flag, " ", path, ": '", key, "' is a group, not a dataset (it holds: ", listed(members),
                            "); name a dataset with ", key_flag,
                            members.empty() ? std::string() : concat(", e.g. ", key_flag, " ", key, "/", members[0])));
  }
  LRFIND_INPUT_CHECK(kind == H5I_DATASET, flag, " ", path, ": '", key, "' is not a dataset; name one with ", key_flag);
  auto type = h5::datatype(H5Dget_type(raw.id.get()), where);
  raw.type_class = H5Tget_class(type.get());
  raw.type_size = H5Tget_size(type.get());
  raw.type_name = typeName(type.get());
  if (raw.type_class == H5T_INTEGER) raw.is_signed = H5Tget_sign(type.get()) != H5T_SGN_NONE;
  if (raw.type_class == H5T_ENUM) {
    h5::Id base(H5Tget_super(type.get()), H5Tclose);
    raw.is_signed = base.valid() && H5Tget_sign(base.get()) != H5T_SGN_NONE;
  }
  auto space = h5::dataspace(H5Dget_space(raw.id.get()), where);
  const int rank = H5Sget_simple_extent_ndims(space.get());
  LRFIND_INPUT_CHECK(rank >= 1, where, " is a scalar or has no simple shape; it must be an array");
  raw.dims.resize(rank);
  H5Sget_simple_extent_dims(space.get(), raw.dims.data(), nullptr);
  h5::Id dcpl(H5Dget_create_plist(raw.id.get()), H5Pclose);
  if (dcpl.valid() && H5Pget_layout(dcpl.get()) == H5D_CHUNKED) {
    raw.chunk.resize(rank);
    if (H5Pget_chunk(dcpl.get(), rank, raw.chunk.data()) != rank) raw.chunk.clear();
  }
  H5Eclear2(H5E_DEFAULT);
  checkFilters(raw);
  return raw;
}

// The memory type and tensor dtype that hold `raw`'s elements as stored: integers keep
// their width (unsigned ones widen to the next signed type LibTorch has), float16 stays
// float16, wider floats become float32.
struct HeldType {
  h5::Id mem_type;
  at::ScalarType dtype;
};

HeldType heldType(const RawDataset& raw) {
  auto native = [](hid_t t) { return h5::Id(H5Tcopy(t), H5Tclose); };
  if (raw.type_class == H5T_FLOAT) {
    if (raw.type_size == 2) {
      // IEEE half in native (little-endian) order; HDF5 converts other 16-bit formats.
      h5::Id half = native(H5T_IEEE_F32LE);
      h5::check(H5Tset_fields(half.get(), 15, 10, 5, 0, 10), raw.where);
      h5::check(H5Tset_size(half.get(), 2), raw.where);
      h5::check(H5Tset_ebias(half.get(), 15), raw.where);
      h5::check(H5Tset_order(half.get(), H5T_ORDER_LE), raw.where);
      return {std::move(half), at::kHalf};
    }
    return {native(H5T_NATIVE_FLOAT), at::kFloat};
  }
  LRFIND_CHECK(raw.type_class == H5T_INTEGER, "not an integer type: ", raw.type_name);
  switch (raw.type_size) {
    case 1: return raw.is_signed ? HeldType{native(H5T_NATIVE_INT8), at::kChar}
                                 : HeldType{native(H5T_NATIVE_UINT8), at::kByte};
    case 2: return raw.is_signed ? HeldType{native(H5T_NATIVE_INT16), at::kShort}
                                 : HeldType{native(H5T_NATIVE_INT32), at::kInt};
    case 4: return raw.is_signed ? HeldType{native(H5T_NATIVE_INT32), at::kInt}
                                 : HeldType{native(H5T_NATIVE_INT64), at::kLong};
    default: return raw.is_signed ? HeldType{native(H5T_NATIVE_INT64), at::kLong}
                                  : HeldType{native(H5T_NATIVE_DOUBLE), at::kDouble};
  }
}

constexpr int64_t kMaxChunkCache = int64_t{256} << 20;  // chunk cache bound per dataset
// Runs of rows per selection: HDF5 1.10 ORs hyperslabs in time linear in those already
// selected (10,000 single-row runs take 2.3 s to select, 40,000 take 51 s; 512 take 2 ms).
constexpr std::size_t kMaxRunsPerRead = 512;

// Reads `rows` (sorted, unique) of `raw` into a tensor of `dtype` [rows.size(), ...].
//
// Rows are grouped by band: the rows that share chunks along the sample axis (the chunk's
// first extent; a single row when the dataset is not chunked). A piece is whole bands
// holding about `piece_bytes` of chunks (of rows, not chunked); `progress` hears of each
// piece. A piece is read with one H5Dread per kMaxRunsPerRead runs of consecutive rows,
// each run OR'ed into one selection, and the chunk cache holds a piece's chunks: every
// chunk is decompressed once (the old loader, one read per run with HDF5's 1 MB cache,
// decompressed a chunk again for every run in it). No chunk is in two pieces.
at::Tensor readRows(const RawDataset& raw, hid_t mem_type, at::ScalarType dtype, const std::vector<int64_t>& rows,
                    const ReadProgress& progress, int64_t piece_bytes = int64_t{64} << 20) {
  std::vector<int64_t> sizes(raw.dims.begin(), raw.dims.end());
  sizes[0] = static_cast<int64_t>(rows.size());
  at::Tensor t = at::empty(sizes, dtype);
  if (t.numel() == 0) return t;
  const int64_t row_elems = t.numel() / sizes[0];
  const int64_t row_bytes = row_elems * static_cast<int64_t>(t.element_size());
  const std::string failed = concat(raw.where, ": read failed (file truncated or corrupt?)");

  // Band geometry and the dataset access properties with a chunk cache to match.
  int64_t band_rows = 1, band_bytes = row_bytes;
  h5::Id dapl = h5::plist(H5Pcreate(H5P_DATASET_ACCESS), raw.where);
  if (!raw.chunk.empty()) {
    band_rows = static_cast<int64_t>(std::max<hsize_t>(raw.chunk[0], 1));
    int64_t chunk_bytes = static_cast<int64_t>(raw.type_size), chunks_per_band = 1;
    for (std::size_t d = 0; d < raw.dims.size(); ++d) chunk_bytes *= static_cast<int64_t>(raw.chunk[d]);
    for (std::size_t d = 1; d < raw.dims.size(); ++d) {
      chunks_per_band *= static_cast<int64_t>((raw.dims[d] + raw.chunk[d] - 1) / std::max<hsize_t>(raw.chunk[d], 1));
    }
    band_bytes = chunk_bytes * chunks_per_band;
    // A piece's chunks: less than piece_bytes + one band.
    const int64_t cache = std::clamp(piece_bytes + band_bytes, chunk_bytes, std::max(chunk_bytes, kMaxChunkCache));
    // Slots: about 100 per chunk the cache holds (HDF5's advice), odd.
    const int64_t slots = std::max<int64_t>(521, (cache / std::max<int64_t>(chunk_bytes, 1)) * 100) | 1;
    h5::check(H5Pset_chunk_cache(dapl.get(), static_cast<std::size_t>(slots), static_cast<std::size_t>(cache), 0.75),
              raw.where);
  }
  h5::Id ds = h5::dataset(H5Dopen2(raw.file, raw.key.c_str(), dapl.get()), raw.where);
  auto file_space = h5::dataspace(H5Dget_space(ds.get()), raw.where);
  auto* base = static_cast<char*>(t.data_ptr());
  std::vector<hsize_t> start(raw.dims.size(), 0), count(raw.dims), mem_dims(raw.dims);

  // One H5Dread of rows [first, last): its runs, OR'ed.
  auto read = [&](std::size_t first, std::size_t last) {
    for (std::size_t i = first; i < last;) {
      std::size_t j = i + 1;
      while (j < last && rows[j] == rows[j - 1] + 1) ++j;
      start[0] = static_cast<hsize_t>(rows[i]);
      count[0] = static_cast<hsize_t>(j - i);
      h5::check(H5Sselect_hyperslab(file_space.get(), i == first ? H5S_SELECT_SET : H5S_SELECT_OR, start.data(),
                                    nullptr, count.data(), nullptr),
                raw.where);
      i = j;
    }
    mem_dims[0] = static_cast<hsize_t>(last - first);
    auto mem_space = h5::dataspace(H5Screate_simple(static_cast<int>(mem_dims.size()), mem_dims.data(), nullptr),
                                   raw.where);
    h5::check(H5Dread(ds.get(), mem_type, mem_space.get(), file_space.get(), H5P_DEFAULT,
                      base + static_cast<int64_t>(first) * row_bytes),
              failed);
  };

  const std::size_t n = rows.size();
  std::size_t piece_begin = 0;
  while (piece_begin < n) {
    // Whole bands until the piece holds piece_bytes of chunks (rows, not chunked).
    std::size_t piece_end = piece_begin;
    int64_t work = 0;
    while (piece_end < n && (piece_end == piece_begin || work < piece_bytes)) {
      const int64_t band = rows[piece_end] / band_rows;
      std::size_t band_end = piece_end;
      while (band_end < n && rows[band_end] / band_rows == band) ++band_end;
      work += raw.chunk.empty() ? static_cast<int64_t>(band_end - piece_end) * row_bytes : band_bytes;
      piece_end = band_end;
    }
    // The piece in reads of at most kMaxRunsPerRead runs.
    std::size_t first = piece_begin, runs = 0;
    for (std::size_t i = piece_begin; i < piece_end; ++i) {
      if (i > piece_begin && rows[i] != rows[i - 1] + 1 && ++runs == kMaxRunsPerRead) {
        read(first, i);
        first = i;
        runs = 0;
      }
    }
    read(first, piece_end);
    piece_begin = piece_end;
    if (progress) progress(static_cast<int64_t>(piece_begin), static_cast<int64_t>(n));
  }
  return t;
}

void checkFinite(const at::Tensor& t, const std::string& where, const std::function<int64_t(int64_t)>& sample) {
  if (t.numel() == 0 || !at::isFloatingType(t.scalar_type()) || at::isfinite(t).all().item<bool>()) return;
  const auto bad = at::nonzero(at::logical_not(at::isfinite(t)).reshape({t.size(0), -1}).any(1));
  throw InputError(concat(where, " holds NaN or Inf (first at sample ", sample(bad[0][0].item<int64_t>()),
                          "); clean the data before the sweep"));
}

// The axis of the stored inputs that --normalize's values go along, -1 for none (one
// channel): the last with channels_last, else axis 1 except for [samples, H, W] images.
int channelAxis(std::size_t rank, bool channels_last) {
  if (channels_last) return static_cast<int>(rank) - 1;
  return rank == 3 ? -1 : 1;
}

// Validates the transform against the inputs' shape and type; returns it complete.
InputTransform inputTransform(const DataSource& src, const RawDataset& x) {
  InputTransform t;
  t.scale = src.input_scale.value_or(defaultInputScale(x.type_name));
  LRFIND_INPUT_CHECK(std::isfinite(t.scale) && t.scale != 0, "--input-scale must be a finite non-zero number, got ",
                     t.scale);
  t.channels_last = src.channels_last;
  LRFIND_INPUT_CHECK(!t.channels_last || x.dims.size() >= 3, "--channels-last needs image inputs [samples, H, W, C], "
                     "but ", x.where, " has shape ", shapeString(x.dims), "; leave it out for feature vectors");
  LRFIND_INPUT_CHECK(src.mean.empty() == src.std.empty(), "--normalize needs both means and stds");
  if (src.mean.empty()) return t;
  const int axis = channelAxis(x.dims.size(), t.channels_last);
  const int64_t channels = axis < 0 ? 1 : static_cast<int64_t>(x.dims[static_cast<std::size_t>(axis)]);
  const std::string axis_text = axis < 0 ? std::string("one channel: [samples, H, W] images")
                                         : concat("axis ", axis, t.channels_last ? ", the last (--channels-last)" : "");
  for (const auto* values : {&src.mean, &src.std}) {
    const auto given = static_cast<int64_t>(values->size());
    LRFIND_INPUT_CHECK(given == 1 || given == channels, "--normalize gives ", given, values == &src.mean ? " mean" : " std",
                       given == 1 ? "" : "s", " but ", x.where, " ", shapeString(x.dims), " has ", channels,
                       " channel", channels == 1 ? "" : "s", " (", axis_text, "); give one value or ", channels);
  }
  for (const double s : src.std) {
    LRFIND_INPUT_CHECK(std::isfinite(s) && s != 0, "--normalize: every std must be a finite non-zero number, got ", s);
  }
  t.mean = src.mean;
  t.std = src.std;
  return t;
}

// [1, C, 1, ...] (or a single value) on `like`'s device, for per-channel arithmetic on
// channels-first inputs of like's rank.
at::Tensor perChannel(const std::vector<double>& values, const at::Tensor& like) {
  std::vector<float> v(values.begin(), values.end());
  at::Tensor t = at::tensor(v, at::kFloat);
  if (values.size() > 1) {  // else [1]: broadcasts over everything
    std::vector<int64_t> shape(static_cast<std::size_t>(like.dim()), 1);
    shape[1] = static_cast<int64_t>(values.size());
    t = t.view(shape);
  }
  return like.device().is_cpu() ? t : t.to(like.device());
}

// The targets' type and shape, before anything is read: class labels (integers, bool)
// are one per sample, so trailing size-1 axes ([N, 1], PatchCamelyon's [N, 1, 1, 1]) go.
void checkTargets(const RawDataset& y) {
  const bool labels = y.type_class == H5T_INTEGER || y.type_class == H5T_ENUM;
  LRFIND_INPUT_CHECK(labels || y.type_class == H5T_FLOAT, y.where,
                     " must be integer or bool class labels, or float targets, got ", y.type_name);
  LRFIND_INPUT_CHECK(y.type_class != H5T_ENUM || y.type_size == 1 || (y.is_signed && y.type_size <= 8), y.where,
                     " holds ", y.type_name, "; class labels must be integers or bool");
  const bool one_per_sample = std::all_of(y.dims.begin() + 1, y.dims.end(), [](hsize_t v) { return v == 1; });
  LRFIND_INPUT_CHECK(!labels || one_per_sample, y.where, " holds class labels, so it must have shape [samples] (or "
                     "[samples, 1, ...]), got ", shapeString(y.dims));
}

// Reads the targets `y` (from the data file or the labels file) for the rows held.
void readTargets(const RawDataset& y, const std::vector<int64_t>& rows, const std::function<int64_t(int64_t)>& global,
                 Dataset& d) {
  const bool labels = y.type_class == H5T_INTEGER || y.type_class == H5T_ENUM;
  d.has_labels = labels;
  if (!labels) {
    d.y = readRows(y, h5::Id(H5Tcopy(H5T_NATIVE_FLOAT), H5Tclose).get(), at::kFloat, rows, {});
    checkFinite(d.y, y.where, global);
    return;
  }
  if (y.type_class == H5T_ENUM) {
    // bool (an enum over an integer): the enum's values, read as its own type.
    h5::Id type(H5Dget_type(y.id.get()), H5Tclose);
    h5::Id mem(H5Tget_native_type(type.get(), H5T_DIR_ASCEND), H5Tclose);
    LRFIND_INPUT_CHECK(mem.valid(), y.where, " holds ", y.type_name, " that this HDF5 cannot read");
    const at::ScalarType held = y.type_size == 1 ? (y.is_signed ? at::kChar : at::kByte)
                                : y.type_size == 2 ? at::kShort
                                : y.type_size == 4 ? at::kInt
                                                   : at::kLong;
    d.y = readRows(y, mem.get(), held, rows, {}).to(at::kLong);
  } else {
    d.y = readRows(y, h5::Id(H5Tcopy(H5T_NATIVE_INT64), H5Tclose).get(), at::kLong, rows, {});
  }
  d.y = d.y.reshape({d.y.size(0)});
  if (d.y.numel() == 0) return;
  const auto negative = at::nonzero(d.y < 0);
  if (negative.size(0) > 0) {
    const int64_t at_row = negative[0][0].item<int64_t>();
    throw InputError(concat(y.where, " holds a negative label (", d.y[at_row].item<int64_t>(), ") at sample ",
                            global(at_row), "; labels must be 0 … classes-1"));
  }
}

// Opens an HDF5 file for reading; `flag` names it in messages.
h5::Id openFile(const std::string& flag, const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  LRFIND_INPUT_CHECK(fs::exists(path, ec), flag, " ", path, ": no such file");
  LRFIND_INPUT_CHECK(!fs::is_directory(path, ec), flag, " ", path, ": is a directory, not an HDF5 file");
  LRFIND_INPUT_CHECK(std::ifstream(path).good(), flag, " ", path, ": cannot be read (check permissions)");
  const htri_t is_hdf5 = H5Fis_hdf5(path.c_str());
  if (is_hdf5 <= 0) {
    H5Eclear2(H5E_DEFAULT);
    throw InputError(concat(flag, " ", path, ": not an HDF5 file (or truncated); write one with h5py"));
  }
  const hid_t fid = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (fid < 0) {
    throw InputError(concat(flag, " ", path, ": cannot open as HDF5 (", h5::takeCause().text, ")"));
  }
  return h5::Id(fid, H5Fclose);
}

}  // namespace

at::Tensor modelInputs(const at::Tensor& stored, const InputTransform& t) {
  const bool is_float = stored.scalar_type() == at::kFloat;
  if (is_float && t.identity()) return stored;
  // A fresh float32 tensor, so that the arithmetic below may work in place.
  at::Tensor x = is_float ? stored.clone() : stored.to(at::kFloat);
  if (t.scale != 1) {
    const double k = std::round(1.0 / t.scale);
    if (k >= 2 && k < 16777216 && 1.0 / k == t.scale) {
      x.div_(k);  // exact k: one correctly rounded division, as numpy's x / 255
    } else {
      x.mul_(t.scale);
    }
  }
  if (t.channels_last) {
    std::vector<int64_t> order{0, x.dim() - 1};
    for (int64_t d = 1; d < x.dim() - 1; ++d) order.push_back(d);
    x = x.permute(order);
  }
  if (!t.mean.empty()) {
    x.sub_(perChannel(t.mean, x)).div_(perChannel(t.std, x));
  }
  return x.contiguous();
}

std::pair<std::string, std::string> splitLabelsArgument(const std::string& text) {
  std::error_code ec;
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || std::filesystem::exists(text, ec)) return {text, ""};
  return {text.substr(0, colon), text.substr(colon + 1)};
}

double defaultInputScale(const std::string& input_type) { return input_type == "uint8" ? 1.0 / 255.0 : 1.0; }

Dataset loadHdf5(const std::string& path, const std::string& x_key, const std::string& y_key, const RowPlan& plan) {
  DataSource src;
  src.path = path;
  src.x_key = x_key;
  src.y_key = y_key;
  return loadHdf5(src, plan);
}

Dataset loadHdf5(const DataSource& src, const RowPlan& plan) {
  h5::silenceErrors();
  const h5::Id file = openFile(src.flag, src.path);
  const RawDataset x = openDataset(file.get(), src.flag, src.path, src.x_key, "--x-key");
  const bool other_file = !src.labels_path.empty();
  const std::string y_key = src.labels_key.empty() ? src.y_key : src.labels_key;
  const std::string labels_key_flag = concat(src.labels_flag, " FILE:DATASET");
  const h5::Id labels_file = other_file ? openFile(src.labels_flag, src.labels_path) : h5::Id();
  const RawDataset y = other_file ? openDataset(labels_file.get(), src.labels_flag, src.labels_path, y_key,
                                                src.labels_key.empty() ? concat("--y-key (or ", labels_key_flag, ")")
                                                                       : labels_key_flag)
                                  : openDataset(file.get(), src.flag, src.path, y_key, "--y-key");

  const bool numeric = x.type_class == H5T_INTEGER || x.type_class == H5T_FLOAT;
  LRFIND_INPUT_CHECK(numeric, x.where, " holds ", x.type_name, "; inputs must be numbers (uint8, int8, uint16, "
                     "int16, int32, int64, float16, float32 or float64)",
                     x.type_class == H5T_COMPOUND ? ": store each field as a dataset of its own" : "");
  LRFIND_INPUT_CHECK(x.dims.size() >= 2, x.where, " must have shape [samples, features...], got ",
                     shapeString(x.dims));
  LRFIND_INPUT_CHECK(x.dims[0] > 0, x.where, " has no samples");
  checkTargets(y);
  LRFIND_INPUT_CHECK(y.dims[0] == x.dims[0], y.where, " has ", y.dims[0], " samples but ",
                     other_file ? x.where : concat("'", src.x_key, "'"), " has ", x.dims[0], "; they must agree");

  Dataset d;
  d.source = src.path;
  d.flag = src.flag;
  d.labels_flag = src.labels_flag;
  if (other_file) d.labels_source = concat(src.labels_path, ":", y_key);
  d.input_type = x.type_name;
  d.transform = inputTransform(src, x);
  d.total = static_cast<int64_t>(x.dims[0]);
  std::vector<int64_t> rows;
  if (plan) {
    d.rows = plan(d.total);
    rows = d.rows;
    if (static_cast<int64_t>(d.rows.size()) == d.total) d.rows.clear();  // everything: no map needed
  } else {
    rows.resize(static_cast<std::size_t>(d.total));
    std::iota(rows.begin(), rows.end(), int64_t{0});
  }
  auto global = [&d](int64_t local) { return d.rows.empty() ? local : d.rows[static_cast<std::size_t>(local)]; };
  const HeldType held = heldType(x);
  d.stored = readRows(x, held.mem_type.get(), held.dtype, rows, src.progress, src.piece_bytes);
  checkFinite(d.stored, x.where, global);
  readTargets(y, rows, global, d);
  d.x = d.stored.scalar_type() == at::kFloat && d.transform.identity()
            ? d.stored
            : modelInputs(d.stored.narrow(0, 0, std::min<int64_t>(2, d.stored.size(0))), d.transform);
  return d;
}

ReadProgress consoleReadProgress(std::FILE* out, std::string what, bool terminal) {
  using Clock = std::chrono::steady_clock;
  struct State {
    Clock::time_point start = Clock::now();
    Clock::time_point last_line{};
    bool shown = false;
  };
  auto state = std::make_shared<State>();
  return [out, what = std::move(what), terminal, state](int64_t done, int64_t total) {
    const auto now = Clock::now();
    const double seconds = std::chrono::duration<double>(now - state->start).count();
    const bool finished = done >= total;
    if (seconds < 1.0 && !state->shown) return;  // quick reads say nothing
    if (!terminal && !finished && state->shown && now - state->last_line < std::chrono::seconds(5)) return;
    const int percent = total > 0 ? static_cast<int>(100 * done / total) : 100;
    std::fprintf(out, "%slrfind_dist: reading %s: %d%% (%lld of %lld rows, %.1f s)%s", terminal ? "\r" : "",
                 what.c_str(), percent, static_cast<long long>(done), static_cast<long long>(total), seconds,
                 terminal && !finished ? "" : "\n");
    std::fflush(out);
    state->shown = true;
    state->last_line = now;
  };
}

void checkLabelsFit(const Dataset& data, int64_t num_outputs, const std::string& model_name) {
  if (!data.has_labels || data.y.numel() == 0) return;
  const int64_t max_label = data.y.max().item<int64_t>();
  if (max_label < num_outputs) return;
  const int64_t first = at::nonzero(data.y >= num_outputs)[0][0].item<int64_t>();
  const int64_t sample = data.rows.empty() ? first : data.rows[static_cast<std::size_t>(first)];
  throw InputError(concat(data.labels_source.empty() ? concat(data.flag, " ", data.source)
                                                     : concat(data.labels_flag, " ", data.labels_source),
                          ": label ", max_label, " is out of range for --model ", model_name, ", which has ",
                          num_outputs, " outputs; labels must be 0 … ", num_outputs - 1, " (the first out of range: ",
                          data.y[first].item<int64_t>(), " at sample ", sample, ")"));
}

}  // namespace lrfind::runtime
