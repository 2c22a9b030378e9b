#include "runtime/dataset.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

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
  return d;
}

namespace {

std::string shapeString(const std::vector<hsize_t>& dims) {
  std::string s = "[";
  for (std::size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

// The names of the links in a group (the file's root group by default).
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

// "a, b, c" for a message: at most 10 names, then how many more.
std::string listed(const std::vector<std::string>& names) {
  constexpr std::size_t kShown = 10;
  std::string text;
  for (std::size_t i = 0; i < names.size() && i < kShown; ++i) text += (i ? ", " : "") + names[i];
  if (names.size() > kShown) text += concat(" and ", names.size() - kShown, " more");
  return text.empty() ? "nothing" : text;
}

struct RawDataset {
  h5::Id id;
  H5T_class_t type_class = H5T_NO_CLASS;
  std::size_t type_size = 0;
  std::string type_name;  // as numpy says it: "float16", "uint8", ...
  std::vector<hsize_t> dims;
};

// numpy's name for an HDF5 type ("float16", "int32", "uint8"), or its class and size
// for the types that have no numpy counterpart.
std::string typeName(hid_t type) {
  const H5T_class_t type_class = H5Tget_class(type);
  const std::size_t bits = H5Tget_size(type) * 8;
  switch (type_class) {
    case H5T_FLOAT: return concat("float", bits);
    case H5T_INTEGER: return concat(H5Tget_sign(type) == H5T_SGN_NONE ? "uint" : "int", bits);
    case H5T_STRING: return "string";
    case H5T_COMPOUND: return concat("a compound type of ", bits / 8, " bytes");
    default: return concat("a non-numeric type of ", bits / 8, " bytes");
  }
}

RawDataset openDataset(hid_t file, const std::string& path, const std::string& key,
                       const char* flag) {
  const std::string where = concat("--data ", path, ": dataset '", key, "'");
  if (H5Lexists(file, key.c_str(), H5P_DEFAULT) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    throw InputError(concat(where, " not found (the file has: ", listed(memberNames(file)),
                            "); name the right one with ", flag));
  }
  // A group, a named datatype or a dangling link under that name is bad input too; only
  // an OS error is an I/O failure.
  RawDataset raw;
  raw.id = h5::Id(H5Oopen(file, key.c_str(), H5P_DEFAULT), H5Oclose);
  if (!raw.id.valid()) {
    h5::Cause cause = h5::takeCause();
    if (cause.os_error != 0) throw h5::Failure(where, std::move(cause));
    throw InputError(concat("--data ", path, ": '", key, "' cannot be opened (", cause.text, "); name a dataset with ",
                            flag));
  }
  const H5I_type_t kind = H5Iget_type(raw.id.get());
  if (kind == H5I_GROUP) {
    const std::vector<std::string> members = memberNames(raw.id.get());
    throw InputError(concat("--data ", path, ": '", key, "' is a group, not a dataset (it holds: ", listed(members),
                            "); name a dataset with ", flag,
                            members.empty() ? std::string() : concat(", e.g. ", flag, " ", key, "/", members[0])));
  }
  LRFIND_INPUT_CHECK(kind == H5I_DATASET, "--data ", path, ": '", key, "' is not a dataset; name one with ", flag);
  auto type = h5::datatype(H5Dget_type(raw.id.get()), where);
  raw.type_class = H5Tget_class(type.get());
  raw.type_size = H5Tget_size(type.get());
  raw.type_name = typeName(type.get());
  auto space = h5::dataspace(H5Dget_space(raw.id.get()), where);
  const int rank = H5Sget_simple_extent_ndims(space.get());
  LRFIND_INPUT_CHECK(rank >= 1, where, " is a scalar or has no simple shape; it must be an array");
  raw.dims.resize(rank);
  H5Sget_simple_extent_dims(space.get(), raw.dims.data(), nullptr);
  return raw;
}

// Reads `rows` (sorted, unique; empty: all) of `raw`, one hyperslab per run of
// consecutive rows, into a tensor of dtype with rows.size() rows.
at::Tensor readRows(const RawDataset& raw, hid_t mem_type, at::ScalarType dtype, const std::vector<int64_t>& rows,
                    const std::string& where) {
  std::vector<int64_t> sizes(raw.dims.begin(), raw.dims.end());
  const bool all = rows.empty();
  if (!all) sizes[0] = static_cast<int64_t>(rows.size());
  at::Tensor t = at::empty(sizes, dtype);
  if (t.numel() == 0) return t;
  const std::string failed = concat(where, ": read failed (file truncated or corrupt?)");
  if (all) {
    h5::check(H5Dread(raw.id.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data_ptr()), failed);
    return t;
  }
  auto file_space = h5::dataspace(H5Dget_space(raw.id.get()), where);
  const int64_t row_elems = t.numel() / sizes[0];
  auto* base = static_cast<char*>(t.data_ptr());
  std::vector<hsize_t> start(raw.dims.size(), 0), count(raw.dims);
  for (std::size_t i = 0; i < rows.size();) {
    std::size_t j = i + 1;
    while (j < rows.size() && rows[j] == rows[j - 1] + 1) ++j;
    start[0] = static_cast<hsize_t>(rows[i]);
    count[0] = static_cast<hsize_t>(j - i);
    h5::check(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr),
              where);
    auto mem_space = h5::dataspace(H5Screate_simple(static_cast<int>(count.size()), count.data(), nullptr), where);
    h5::check(H5Dread(raw.id.get(), mem_type, mem_space.get(), file_space.get(), H5P_DEFAULT,
                      base + static_cast<int64_t>(i) * row_elems * t.element_size()),
              failed);
    i = j;
  }
  return t;
}

void checkFinite(const at::Tensor& t, const std::string& where, const std::function<int64_t(int64_t)>& sample) {
  if (t.numel() == 0 || at::isfinite(t).all().item<bool>()) return;
  const auto bad = at::nonzero(at::logical_not(at::isfinite(t)).reshape({t.size(0), -1}).any(1));
  throw InputError(concat(where, " holds NaN or Inf (first at sample ", sample(bad[0][0].item<int64_t>()),
                          "); clean the data before the sweep"));
}

}  // namespace

Dataset loadHdf5(const std::string& path, const std::string& x_key, const std::string& y_key,
                 const RowPlan& plan) {
  h5::silenceErrors();
  namespace fs = std::filesystem;
  std::error_code ec;
  LRFIND_INPUT_CHECK(fs::exists(path, ec), "--data ", path, ": no such file");
  LRFIND_INPUT_CHECK(!fs::is_directory(path, ec), "--data ", path, ": is a directory, not an HDF5 file");
  LRFIND_INPUT_CHECK(std::ifstream(path).good(), "--data ", path, ": cannot be read (check permissions)");
  const htri_t is_hdf5 = H5Fis_hdf5(path.c_str());
  if (is_hdf5 <= 0) {
    H5Eclear2(H5E_DEFAULT);
    throw InputError(concat("--data ", path, ": not an HDF5 file (or truncated); write one with h5py"));
  }
  const hid_t fid = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (fid < 0) {
    throw InputError(concat("--data ", path, ": cannot open as HDF5 (", h5::takeCause().text, ")"));
  }
  h5::Id file(fid, H5Fclose);

  const RawDataset x = openDataset(file.get(), path, x_key, "--x-key");
  const RawDataset y = openDataset(file.get(), path, y_key, "--y-key");
  const std::string xw = concat("--data ", path, ": dataset '", x_key, "'");
  const std::string yw = concat("--data ", path, ": dataset '", y_key, "'");

  LRFIND_INPUT_CHECK(x.type_class == H5T_FLOAT && (x.type_size == 4 || x.type_size == 8), xw,
                     " must be float32 or float64, got ", x.type_name,
                     "; convert it with numpy astype('float32')");
  LRFIND_INPUT_CHECK(x.dims.size() >= 2, xw, " must have shape [samples, features...], got ",
                     shapeString(x.dims));
  LRFIND_INPUT_CHECK(x.dims[0] > 0, xw, " has no samples");
  const bool labels = y.type_class == H5T_INTEGER;
  LRFIND_INPUT_CHECK(
      (labels && (y.type_size == 4 || y.type_size == 8)) ||
          (y.type_class == H5T_FLOAT && (y.type_size == 4 || y.type_size == 8)),
      yw, " must be int32/int64 class labels or float32/float64 targets, got ", y.type_name);
  LRFIND_INPUT_CHECK(!labels || y.dims.size() == 1, yw, " holds class labels, so it must have shape [samples], got ",
                     shapeString(y.dims));
  LRFIND_INPUT_CHECK(y.dims[0] == x.dims[0], yw, " has ", y.dims[0], " samples but '", x_key,
                     "' has ", x.dims[0], "; they must agree");

  Dataset d;
  d.source = path;
  d.has_labels = labels;
  d.total = static_cast<int64_t>(x.dims[0]);
  if (plan) {
    d.rows = plan(d.total);
    if (static_cast<int64_t>(d.rows.size()) == d.total) d.rows.clear();  // everything: no map needed
  }
  auto global = [&d](int64_t local) { return d.rows.empty() ? local : d.rows[static_cast<std::size_t>(local)]; };
  d.x = readRows(x, H5T_NATIVE_FLOAT, at::kFloat, d.rows, xw);
  checkFinite(d.x, xw, global);
  if (labels) {
    d.y = readRows(y, H5T_NATIVE_INT64, at::kLong, d.rows, yw);
    const int64_t min_label = d.y.min().item<int64_t>();
    LRFIND_INPUT_CHECK(min_label >= 0, yw, " holds a negative label (", min_label,
                       "); labels must be 0 … classes-1");
  } else {
    d.y = readRows(y, H5T_NATIVE_FLOAT, at::kFloat, d.rows, yw);
    checkFinite(d.y, yw, global);
  }
  return d;
}

void checkLabelsFit(const Dataset& data, int64_t num_outputs, const std::string& model_name) {
  if (!data.has_labels) return;
  const int64_t max_label = data.y.max().item<int64_t>();
  LRFIND_INPUT_CHECK(max_label < num_outputs, "--data ", data.source, ": label ", max_label,
                     " is out of range for --model ", model_name, ", which has ", num_outputs,
                     " outputs; labels must be 0 … ", num_outputs - 1);
}

}  // namespace lrfind::runtime
