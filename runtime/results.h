#pragma once
// The HDF5 results file (DESIGN.md "Results"), written as the sweep goes.
//
// The writer creates `<out>.partial`, appends one row to every dataset per step and
// flushes (H5Fflush), so a killed job leaves a readable file with every finished step
// and complete=0. When the sweep ends normally it writes the suggestions and final
// attributes, closes the file and renames it to `<out>` (atomic on one filesystem); an
// existing `<out>` is never half-overwritten. After an error the file stays at
// `<out>.partial` with stop_reason="error".

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "finder/result.h"
#include "runtime/hdf5_handle.h"

namespace lrfind::runtime {

// What the file records about the run beyond the sweep options.
struct RunInfo {
  std::string model;
  std::string data;
  std::string optimizer;
  std::string loss_fn;
  std::string device;
  int64_t batch_size = 0;         // per rank
  int64_t global_batch_size = 0;  // batch_size * world * accumulate
  int64_t seed = 0;
  int world_size = 1;
  // The run's full configuration as TOML (lrfind_dist --config reads it back); stored
  // as the "config" attribute when not empty.
  std::string config;
};

// Throws InputError when `path` cannot be written: its directory is missing or not
// writable, or it exists and `force` is false. `flag` names the option in the message.
void checkOutputPath(const std::string& path, bool force, const std::string& flag);

std::string partialPath(const std::string& path);

class ResultsWriter final : public finder::SweepObserver {
 public:
  ResultsWriter(std::string path, const RunInfo& info);
  ~ResultsWriter() override;

  void onStart(const finder::SweepOptions& options, int world_size) override;
  void onStep(const finder::StepRecord& record) override;
  void onEnd(const finder::SweepResult& result) override;

  // Where the file is now: `<out>` after a normal end, `<out>.partial` before.
  const std::string& currentPath() const { return current_; }

 private:
  void append(h5::Id& dataset, const char* name, const double* row, hsize_t width);

  std::string path_;
  std::string current_;
  RunInfo info_;
  h5::Id file_;
  // Open for the whole sweep: lr, loss, loss_raw, step_seconds, loss_per_rank.
  std::vector<h5::Id> series_;
  h5::Id steps_attr_;
  int world_ = 1;
  hsize_t rows_ = 0;
};

// The whole file, for tests and tools.
struct ResultsData {
  std::vector<double> lr, loss, loss_raw, step_seconds;
  std::vector<std::vector<double>> loss_per_rank;
  std::map<std::string, double> numbers;       // numeric root attributes
  std::map<std::string, std::string> strings;  // string root attributes
  std::map<std::string, double> suggestions;   // attributes of /suggestions
};

ResultsData readResults(const std::string& path);

}  // namespace lrfind::runtime
