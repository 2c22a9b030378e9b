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

#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "finder/result.h"
#include "runtime/grid.h"
#include "runtime/grid_summary.h"
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

// The results file of a tuning grid (README "Tuning grid"): one HDF5 file, every sweep
// in its own group, written and flushed as the sweeps go, like ResultsWriter's file.
//
//   /                  attributes: lrfind_version, grid_axes (1-D strings: the axis names
//                      in grid order), num_sweeps, world_size, ranks_per_sweep, groups,
//                      config (when given), complete, stop_reason, error (when set)
//   /sweeps/<i>/       sweep i in grid order, as it got: exactly a single-sweep file's
//                      root (lr, loss, loss_raw, step_seconds, loss_per_rank, suggestions/,
//                      every attribute, complete=1 when it ended normally), plus the
//                      attributes grid_<axis> (the value, as the flag takes it), group,
//                      started_at and ended_at (seconds since the epoch)
//   /summary/          written by finish(): one row per sweep passed, in grid order:
//                      index, <axis> (strings, one per axis), suggested_lr, <method>_lr
//                      (every method; NaN when none), stop_reason, steps_completed, group,
//                      global_batch_size, started_at, ended_at
//   /summary/seed_groups/<k>/    (with a seed axis) attributes label, median_lr,
//                      log10_lr_min, log10_lr_max, log10_lr_iqr, found; datasets sweeps,
//                      lr, loss_min, loss_max, loss_median
//   /summary/batch_scaling/<k>/  (with a batch-size axis) attributes label, alpha,
//                      intercept, residual; datasets sweeps, batch, lr
//
// The root says complete=1 only when the whole grid completed; the file is then renamed
// from `<path>.partial` to `<path>`. A killed job leaves `<path>.partial` with every
// sweep's flushed steps: the sweeps that ended say complete=1, the ones that ran
// complete=0 and stop_reason="running". A failed write gives the file up as
// ResultsWriter does: every open sweep shrinks back to its flushed steps and is marked
// stop_reason="error", and so is the root; later calls rethrow the IoError.
//
// Several sweeps may be open at once (rank groups run concurrently) and their steps
// interleave. One thread at a time: the caller serializes every call onto one thread.
struct GridFileInfo {
  std::vector<GridAxis> axes;  // grid order
  int world_size = 1;
  int ranks_per_sweep = 1;
  int groups = 1;
  std::string config;  // the run's TOML; the root's "config" attribute when not empty
};

class GridResultsWriter {
 public:
  // Creates `<path>.partial` with the root attributes and an empty /sweeps, and flushes;
  // throws IoError when it cannot.
  GridResultsWriter(std::string path, const GridFileInfo& info);
  ~GridResultsWriter();  // closes the file, leaves it where it is; never throws
  GridResultsWriter(const GridResultsWriter&) = delete;
  GridResultsWriter& operator=(const GridResultsWriter&) = delete;

  // Creates /sweeps/<sweep.index> with a single-sweep file's datasets and attributes
  // (from sweep.options, sweep.info and sweep.result.world_size, the width of
  // loss_per_rank), the grid_<axis> attributes of sweep.values, group and started_at;
  // flushes. A sweep starts once (lrfind::Error otherwise); index < num_sweeps.
  void startSweep(const GridSweep& sweep);
  // Appends one step to open sweep `index`, as ResultsWriter::onStep does, and flushes.
  // record.loss_per_rank holds one loss per rank of the sweep.
  void step(std::size_t index, const finder::StepRecord& record);
  // Writes sweep.result's suggestions, suggested_lr, steps_completed, stop_reason, error
  // (when set), complete (1 when finder::endedNormally) and ended_at; closes the sweep's
  // datasets and flushes. A sweep never started is started first (a sweep that failed
  // before its first step); ending a sweep twice is an lrfind::Error.
  void endSweep(const GridSweep& sweep);
  // Writes /summary (see above) for `sweeps` and the root's complete (1 only when stop is
  // kCompleted), stop_reason and error (when not empty); closes the file (sweeps still
  // open stay as they are: complete=0) and renames it to `<path>` when complete. Once.
  void finish(const std::vector<GridSweep>& sweeps, const GridSummary& summary, finder::StopReason stop,
              const std::string& error);

  // `<path>` after a complete finish(), `<path>.partial` before.
  const std::string& currentPath() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// One sweep, for tests and tools.
struct ResultsData {
  std::vector<double> lr, loss, loss_raw, step_seconds;
  std::vector<double> val_loss, eval_seconds;  // validation mode; else empty
  std::vector<double> loss_scale, skipped;     // loss scaling (fp16); else empty
  std::vector<std::vector<double>> loss_per_rank;
  std::vector<std::vector<double>> group_lr;  // [step][param group]; empty without param_groups/
  struct ParamGroup {
    std::map<std::string, double> numbers;       // multiplier, weight_decay, num_params, numel, suggested_lr
    std::map<std::string, std::string> strings;  // pattern
    std::vector<std::string> parameters;
  };
  std::vector<ParamGroup> param_groups;
  std::map<std::string, double> numbers;       // numeric (scalar) attributes
  std::map<std::string, std::string> strings;  // string (scalar) attributes
  std::map<std::string, double> suggestions;   // attributes of suggestions/
};

// The sweep stored under `group`: "/" in a single-sweep file, "/sweeps/3" in a grid's.
// Throws IoError naming `path` when it cannot be read.
ResultsData readResults(const std::string& path, const std::string& group = "/");

// A grid's whole file, for tests and tools.
struct GridResultsData {
  std::vector<std::string> axes;               // grid_axes
  std::map<std::string, double> numbers;       // numeric root attributes
  std::map<std::string, std::string> strings;  // string root attributes (grid_axes not among them)
  std::map<std::size_t, ResultsData> sweeps;   // every /sweeps/<i> present
  // The /summary datasets when present: numeric ones as doubles, string ones as strings.
  std::map<std::string, std::vector<double>> summary_numbers;
  std::map<std::string, std::vector<std::string>> summary_strings;
  // /summary/seed_groups/<k> and /summary/batch_scaling/<k>, k = 0, 1, ...: their
  // attributes and (numeric) datasets.
  struct Sub {
    std::map<std::string, double> numbers;
    std::map<std::string, std::string> strings;
    std::map<std::string, std::vector<double>> series;
  };
  std::vector<Sub> seed_groups, batch_scaling;
};

// Throws IoError naming `path` when it cannot be read.
GridResultsData readGridResults(const std::string& path);

}  // namespace lrfind::runtime
