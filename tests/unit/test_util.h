#pragma once
// Helpers shared by the unit tests: scratch directories and small HDF5 files.

#include <hdf5.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace lrfind::testing {

// A fresh directory under the system temp dir, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "lrfind_test_XXXXXX").string();
    char* made = ::mkdtemp(pattern.data());
    EXPECT_NE(made, nullptr);
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// Writes one dataset of `file_type` with shape `dims`, from `data` in `mem_type`.
inline void writeDataset(hid_t file, const char* name, hid_t file_type, hid_t mem_type,
                         const std::vector<hsize_t>& dims, const void* data) {
  hid_t space = H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
  hid_t ds = H5Dcreate2(file, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(ds, 0) << name;
  ASSERT_GE(H5Dwrite(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), 0) << name;
  H5Dclose(ds);
  H5Sclose(space);
}

// A classification file: x float32 [n, features] and y int64 labels [n], label = i % classes.
inline void writeClassification(const std::string& path, hsize_t n, hsize_t features, int64_t classes,
                                unsigned seed = 1) {
  std::vector<float> x(n * features);
  std::vector<int64_t> y(n);
  unsigned state = seed;
  for (hsize_t i = 0; i < n; ++i) {
    y[i] = static_cast<int64_t>(i) % classes;
    for (hsize_t f = 0; f < features; ++f) {
      state = state * 1664525u + 1013904223u;
      const float noise = static_cast<float>(state >> 8) / static_cast<float>(1u << 24) - 0.5f;
      x[i * features + f] = noise + (static_cast<int64_t>(f) % classes == y[i] ? 1.5f : 0.0f);
    }
  }
  hid_t file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(file, 0);
  writeDataset(file, "x", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {n, features}, x.data());
  writeDataset(file, "y", H5T_STD_I64LE, H5T_NATIVE_INT64, {n}, y.data());
  H5Fclose(file);
}

}  // namespace lrfind::testing
