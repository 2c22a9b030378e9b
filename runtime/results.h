#pragma once
// The HDF5 results file (README "Results"), written as the sweep goes.
//
// The writer creates `<out>.partial`, appends one row to every dataset per step and
// flushes (H5Fflush), so a killed job leaves a readable file with every finished step
// and complete=0. When the sweep ends normally it writes the suggestions and final
// attributes, closes the file and renames it to `<out>` (atomic on one filesystem); an
// existing `<out>` is never half-overwritten. After an error the file stays at
// `<out>.partial` with stop_reason="error".
//
// When writing the file itself fails, the writer gives it up at once and the file keeps
// exactly the steps flushed before (steps_completed says how many), complete=0. A disk
// about to fill is caught before the flush that might not fit (nothing more is written;
// stop_reason stays "running", as after a kill). When HDF5's write fails (an I/O error,
// a quota, a disk filled by someone else), the writer takes back the rows HDF5 could not
// write and marks the file stop_reason="error" where it still can. Either way the file
// is closed, and the IoError says in one line which file and the OS error ("No space
// left on device"); later calls rethrow it.
//
// The HDF5 ids live behind a pimpl, so that this header (and whoever includes it) does
// not compile against <hdf5.h>.

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "finder/result.h"
#include "runtime/run_info.h"

namespace lrfind::runtime {

// Throws InputError when `path` cannot be written: its directory is missing or not
// writable, or it exists and `force` is false. `flag` names the option in the message.
void checkOutputPath(const std::string& path, bool force, const std::string& flag);

std::string partialPath(const std::string& path);

// One thread at a time (AsyncObserver gives it its own; construction and destruction
// may happen on another). HDF5 errors throw IoError naming the file and the cause.
class ResultsWriter final : public finder::SweepObserver {
 public:
  // Creates `<path>.partial`; throws IoError when it cannot.
  ResultsWriter(std::string path, const RunInfo& info);
  ~ResultsWriter() override;  // closes the file, leaves it where it is; never throws
  ResultsWriter(const ResultsWriter&) = delete;
  ResultsWriter& operator=(const ResultsWriter&) = delete;

  void onStart(const finder::SweepOptions& options, int world_size) override;
  void onStep(const finder::StepRecord& record) override;
  void onEnd(const finder::SweepResult& result) override;

  // Where the file is now: `<out>` after a normal end, `<out>.partial` before.
  const std::string& currentPath() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The whole file, for tests and tools.
struct ResultsData {
  std::vector<double> lr, loss, loss_raw, step_seconds;
  std::vector<std::vector<double>> loss_per_rank;
  std::map<std::string, double> numbers;       // numeric root attributes
  std::map<std::string, std::string> strings;  // string root attributes
  std::map<std::string, double> suggestions;   // attributes of /suggestions
};

// Throws IoError naming `path` when it cannot be read.
ResultsData readResults(const std::string& path);

}  // namespace lrfind::runtime
