#pragma once
// One run of lrfind_dist, from a parsed configuration to the files it writes. The CLI
// (launch/lrfind_dist.cpp) only parses flags into a RunConfig and calls run().

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "finder/options.h"
#include "runtime/factories.h"
#include "runtime/grid.h"

namespace lrfind::runtime {

struct RunConfig {
  std::string model = "mlp";
  std::string output;  // --output: the logits' index or key in forward's tuple, list or dict; empty: one Tensor
  std::string data = "synthetic";
  std::string x_key = "x";
  std::string y_key = "y";
  std::string labels;                 // --labels FILE[:DATASET]; empty: y_key in `data`
  std::optional<double> input_scale;  // unset: 1/255 for uint8 inputs, 1 for the others
  std::vector<double> normalize_mean, normalize_std;  // per channel, after scaling; empty: none
  bool channels_last = false;         // the file holds [N, H, W, C]
  // Validation mode (README "Validation mode"): held-out data evaluated after every step,
  // from another file (--val-data, read with the keys and options above; targets from
  // --val-labels FILE[:DATASET] or the file itself) or the last ceil(F·N) rows of `data`
  // (--val-fraction F, never trained on). val_batches: evaluate the first K global batches
  // only; 0: all of it. Whether it drives the sweep: sweep.monitor.
  std::string val_data;
  std::string val_labels;
  double val_fraction = 0;
  int64_t val_batches = 0;
  std::string loss = "cross_entropy";
  OptimizerConfig optimizer;
  // Parameter groups (README "Parameter groups"): --param-group REGEX=MULT, in order, and
  // --no-decay-bias-norm.
  std::vector<std::string> param_groups;
  bool no_decay_bias_norm = false;
  finder::SweepOptions sweep;
  int64_t batch_size = 32;
  uint64_t seed = 0;
  bool shuffle = true;
  int threads = 0;  // 0: this rank's share of the node's cores
  std::string backend = "auto";  // auto, self, mpi
  double bucket_mb = 25;         // gradient bucket size
  bool overlap = true;           // start each bucket's allreduce during backward
  bool shared_memory = true;     // one node: average through shared memory
  bool check_consistency = false;
  std::string device = "auto";     // auto, cpu, cuda
  bool allow_gpu_sharing = false;  // more ranks than GPUs on a node: share, via host staging
  double comm_timeout_s = 300;     // bound on every wait for another rank (MPI and NCCL)
  double stall_warning_s = 60;     // rank 0 names the ranks it waits for this long; 0: never
  std::string out = "lrfind.h5";
  std::string json;  // empty: no JSON
  std::string plot = "lrfind.svg";  // empty: no plot
  bool print_lr = false;
  bool force = false;
  bool verbose = false;
  // The tuning grid (--grid, [grid]): axes in grid order; empty: one sweep, as always.
  std::vector<GridAxis> grid;
  int ranks_per_sweep = 0;  // ranks per sweep of the grid; 0: the whole world
  // A grid point's configuration: these flags with the point's axis values applied (the
  // CLI parses its command line again, each axis's flag taking the point's value). A
  // grid needs it; the result has no grid of its own.
  std::function<RunConfig(const GridPoint&)> grid_point_config;
  // The effective configuration as TOML (lrfind_dist --write-config), stored in the
  // results; empty when the caller has none.
  std::string config_text;
  // Progress bar when true, log lines when false; unset: bar if stderr is a terminal.
  std::optional<bool> interactive;
};

// 3: a rank did not answer within --comm-timeout (a stall, a dead node, a partition);
// 128 + N: stopped by signal N (SIGINT, SIGTERM).
enum ExitCode : int { kExitOk = 0, kExitFailure = 1, kExitUsage = 2, kExitTimeout = 3 };

// The CLI's name for a library field: "--" + the field with '-' for '_' ("min_lr" ->
// "--min-lr"). The OptionNamer that CLI messages pass to finder/.
std::string flagName(const char* field);

// The checks of `config` that need no files and no other rank; throws InputError
// naming the flag. run() does them first.
void validate(const RunConfig& config);

// Runs the sweep and writes the results. Errors are printed as one line on stderr;
// the return value is the process exit code (2 for bad input, 1 for other failures).
// A communication timeout ends the process from inside, with kExitTimeout: after it
// neither the other ranks nor MPI_Finalize can be relied on to return.
int run(const RunConfig& config);

// Build information for --version: lrfind, LibTorch, CUDA, HDF5, compiler.
std::string versionText();

}  // namespace lrfind::runtime
