// The HDF5 read path, measured.
//
//   hdf5_read [ratio] [--dir DIR] [--keep]
//     Writes a gzip float32 50000 x 3 x 32 x 32 file with h5py's default chunking for
//     chunks=True (3125, 1, 2, 4), then times lrfind's loader for the rows of a shuffled
//     30-step sweep (batch 32) against h5py reading the same rows as one fancy-index read
//     (/usr/bin/python3 with h5py). Prints the ratio lrfind / h5py (goal: <= 1.5). Both
//     read with the file in the page cache: the best of 3.
//   hdf5_read rss [--dir DIR]
//     Peak RSS (VmHWM) of a child process that loads the rows of a 100 x 32 sweep from a
//     2 GB uint8 [N, 32, 32, 3] file, and from a 20 MB one.
//
// Not run by ctest; a program that prints figures (tests/bench/).

#include <hdf5.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "runtime/batches.h"
#include "runtime/dataset.h"

namespace {

using lrfind::runtime::BatchPlan;
using lrfind::runtime::DataSource;
using lrfind::runtime::loadHdf5;
using lrfind::runtime::rowsUsed;

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "hdf5_read: %s failed\n", what);
    std::exit(1);
  }
}

// x of `type` [n, dims...] written slab by slab from fill(row, out) (bytes of one row),
// with `chunk` and gzip level 4 (h5py's compression='gzip') when chunk is not empty; y
// int64 labels [n].
template <typename Fill>
void writeFile(const std::string& path, hid_t type, const std::vector<hsize_t>& dims, const std::vector<hsize_t>& chunk,
               Fill fill) {
  const hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  check(f >= 0, "H5Fcreate");
  const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  if (!chunk.empty()) {
    H5Pset_chunk(dcpl, static_cast<int>(chunk.size()), chunk.data());
    H5Pset_deflate(dcpl, 4);
  }
  const hid_t space = H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
  const hid_t ds = H5Dcreate2(f, "x", type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  check(ds >= 0, "H5Dcreate2");
  const std::size_t row_bytes = H5Tget_size(type) * [&] {
    hsize_t e = 1;
    for (std::size_t d = 1; d < dims.size(); ++d) e *= dims[d];
    return e;
  }();
  const hsize_t slab = chunk.empty() ? 4096 : chunk[0];
  std::vector<char> buffer(slab * row_bytes);
  std::vector<hsize_t> start(dims.size(), 0), count(dims);
  for (hsize_t r = 0; r < dims[0]; r += slab) {
    count[0] = std::min(slab, dims[0] - r);
    start[0] = r;
    for (hsize_t i = 0; i < count[0]; ++i) fill(r + i, buffer.data() + i * row_bytes);
    const hid_t mem = H5Screate_simple(static_cast<int>(count.size()), count.data(), nullptr);
    H5Sselect_hyperslab(space, H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr);
    check(H5Dwrite(ds, type, mem, space, H5P_DEFAULT, buffer.data()) >= 0, "H5Dwrite");
    H5Sclose(mem);
  }
  H5Dclose(ds);
  H5Sclose(space);
  H5Pclose(dcpl);
  std::vector<int64_t> y(dims[0]);
  for (hsize_t i = 0; i < dims[0]; ++i) y[i] = static_cast<int64_t>(i % 10);
  const hid_t yspace = H5Screate_simple(1, dims.data(), nullptr);
  const hid_t yds = H5Dcreate2(f, "y", H5T_STD_I64LE, yspace, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  check(H5Dwrite(yds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, y.data()) >= 0, "H5Dwrite y");
  H5Dclose(yds);
  H5Sclose(yspace);
  H5Fclose(f);
}

std::vector<int64_t> sweepRows(int64_t samples, int64_t steps) {
  BatchPlan plan;  // batch 32, one rank, shuffled, seed 0: lrfind_dist's defaults
  return rowsUsed(samples, plan, steps, "bench");
}

// The best of `n` runs of fn(), in seconds.
template <typename Fn>
double best(int n, Fn fn) {
  double b = 1e300;
  for (int i = 0; i < n; ++i) {
    const double t0 = now();
    fn();
    b = std::min(b, now() - t0);
  }
  return b;
}

int ratio(const std::string& dir, bool keep) {
  const std::string path = dir + "/hdf5_read_gzip.h5";
  const std::vector<hsize_t> dims = {50000, 3, 32, 32}, chunk = {3125, 1, 2, 4};
  if (!std::filesystem::exists(path)) {
    std::printf("writing %s: gzip float32 50000x3x32x32, chunks (3125, 1, 2, 4) ...\n", path.c_str());
    std::fflush(stdout);
    const double t0 = now();
    // Pixels of smooth images with noise, as float32 in [0, 1]: they compress as real
    // images do (partly).
    writeFile(path, H5T_NATIVE_FLOAT, dims, chunk, [](hsize_t row, char* out) {
      auto* x = reinterpret_cast<float*>(out);
      uint32_t s = static_cast<uint32_t>(row) * 2654435761u + 1;
      for (int c = 0; c < 3; ++c) {
        for (int i = 0; i < 32; ++i) {
          for (int j = 0; j < 32; ++j) {
            s = s * 1664525u + 1013904223u;
            const int v = (row % 97) + (i + j) * (c + 1) + static_cast<int>(s >> 29);
            *x++ = static_cast<float>(v % 256) / 255.0f;
          }
        }
      }
    });
    std::printf("  written in %.1f s (%.0f MB on disk)\n", now() - t0,
                static_cast<double>(std::filesystem::file_size(path)) / 1e6);
  }
  const auto rows = sweepRows(50000, 30);
  const std::string rows_file = dir + "/hdf5_read_rows.txt";
  {
    std::ofstream out(rows_file);
    for (int64_t r : rows) out << r << "\n";
  }
  DataSource src;
  src.path = path;
  double lrfind_s = best(3, [&] {
    const auto d = loadHdf5(src, [&](int64_t) { return rows; });
    check(d.size() == static_cast<int64_t>(rows.size()), "row count");
  });
  const std::string script =
      "import sys, time, h5py, numpy as np\n"
      "rows = np.loadtxt(sys.argv[2], dtype=np.int64)\n"
      "best = 1e300\n"
      "for _ in range(3):\n"
      "    t = time.perf_counter()\n"
      "    with h5py.File(sys.argv[1], 'r') as f:\n"
      "        a = f['x'][rows]\n"
      "    best = min(best, time.perf_counter() - t)\n"
      "print(best)\n";
  const std::string script_file = dir + "/hdf5_read_h5py.py";
  std::ofstream(script_file) << script;
  const std::string cmd = "/usr/bin/python3 '" + script_file + "' '" + path + "' '" + rows_file + "'";
  FILE* p = ::popen(cmd.c_str(), "r");
  double h5py_s = -1;
  if (p != nullptr) {
    if (std::fscanf(p, "%lf", &h5py_s) != 1) h5py_s = -1;
    ::pclose(p);
  }
  std::printf("rows of a shuffled 30-step sweep (batch 32): %zu of 50000\n", rows.size());
  std::printf("lrfind loader: %.3f s\n", lrfind_s);
  if (h5py_s > 0) {
    std::printf("h5py f['x'][rows]: %.3f s\n", h5py_s);
    std::printf("ratio lrfind / h5py: %.2f (goal <= 1.5)\n", lrfind_s / h5py_s);
  } else {
    std::printf("h5py: not available (/usr/bin/python3 with h5py); no ratio\n");
  }
  if (!keep) {
    std::filesystem::remove(path);
  }
  std::filesystem::remove(rows_file);
  std::filesystem::remove(script_file);
  return 0;
}

long vmHwmKb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  }
  return -1;
}

// In a child: load a 100 x 32 sweep's rows and print "<hwm before> <hwm after> <rows>".
int rssChild(const std::string& path) {
  DataSource src;
  src.path = path;
  // LibTorch's own start-up first, so that "before" holds it.
  (void)lrfind::runtime::modelInputs(at::zeros({1, 1}, at::kFloat), {});
  const long before = vmHwmKb();
  const auto d = loadHdf5(src, [](int64_t samples) { return sweepRows(samples, 100); });
  std::printf("%ld %ld %lld\n", before, vmHwmKb(), static_cast<long long>(d.size()));
  return 0;
}

int rss(const std::string& dir, const char* self) {
  struct Case {
    const char* name;
    hsize_t rows;
  };
  const hsize_t row_bytes = 32 * 32 * 3;
  const std::vector<Case> cases = {{"2 GB", (hsize_t{2} << 30) / row_bytes}, {"20 MB", (hsize_t{20} << 20) / row_bytes}};
  for (const auto& c : cases) {
    const std::string path = dir + "/hdf5_read_rss_" + std::to_string(c.rows) + ".h5";
    writeFile(path, H5T_NATIVE_UINT8, {c.rows, 32, 32, 3}, {}, [](hsize_t row, char* out) {
      for (hsize_t i = 0; i < 32 * 32 * 3; ++i) out[i] = static_cast<char>((row * 31 + i * 7) & 0xff);
    });
    const std::string cmd = std::string("'") + self + "' rss-child '" + path + "'";
    FILE* p = ::popen(cmd.c_str(), "r");
    long before = -1, after = -1;
    long long held = -1;
    if (p != nullptr) {
      if (std::fscanf(p, "%ld %ld %lld", &before, &after, &held) != 3) before = after = -1;
      ::pclose(p);
    }
    std::printf("uint8 [%llu, 32, 32, 3] (%s, %.0f MB): 100 x 32 sweep reads %lld rows; peak RSS %.1f MB "
                "(%.1f MB before the read)\n",
                static_cast<unsigned long long>(c.rows), c.name,
                static_cast<double>(std::filesystem::file_size(path)) / 1e6, held, after / 1024.0, before / 1024.0);
    std::fflush(stdout);
    std::filesystem::remove(path);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string mode = "ratio", dir = std::filesystem::temp_directory_path().string();
  bool keep = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--dir" && i + 1 < argc) {
      dir = argv[++i];
    } else if (a == "--keep") {
      keep = true;
    } else if (a == "rss-child" && i + 1 < argc) {
      return rssChild(argv[i + 1]);
    } else if (a == "ratio" || a == "rss") {
      mode = a;
    } else {
      std::fprintf(stderr, "usage: hdf5_read [ratio|rss] [--dir DIR] [--keep]\n");
      return 2;
    }
  }
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  return mode == "rss" ? rss(dir, argv[0]) : ratio(dir, keep);
}
