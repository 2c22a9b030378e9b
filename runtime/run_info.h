#pragma once
// What the results file and the reports record about a run beyond the sweep options:
// the facts resolved at run time (the model's name, the device, the world) and the
// configuration as given. Plain data, no HDF5, no LibTorch.

#include <cstdint>
#include <string>
#include <vector>

namespace lrfind::runtime {

// One optimizer param group (runtime/param_groups.h).
struct ParamGroupInfo {
  std::string pattern;  // the --param-group REGEX; "" for the default group
  double multiplier = 1;
  double weight_decay = 0;
  int64_t numel = 0;               // elements of its parameters
  std::vector<std::string> names;  // its parameters, in the model's order
};

struct RunInfo {
  std::string model;
  std::string data;
  std::string optimizer;
  std::string loss_fn;
  std::string device;
  std::string labels;         // "<file>:<dataset>" of --labels; "" when the targets are in `data`
  std::string input_type;     // numpy's name for the stored inputs ("uint8")
  double input_scale = 1;     // the scale used (--input-scale or the type's default)
  std::string normalize;      // "MEAN,...:STD,..." as used; "" for none
  bool channels_last = false;
  // Validation mode: the held-out data ("val.h5", or "d.h5 rows 900-999 (--val-fraction
  // 0.1)"), the labels file of --val-labels ("<file>:<dataset>"), the samples evaluated
  // after each step (over every rank) and --val-batches (0: all). val_data "": none.
  std::string val_data;
  std::string val_labels;
  int64_t val_samples = 0;
  int64_t val_batches = 0;
  int64_t batch_size = 0;         // per rank
  int64_t global_batch_size = 0;  // batch_size * world * accumulate
  int64_t seed = 0;
  int world_size = 1;
  // The optimizer's param groups, the default group first; empty: not recorded (library
  // callers), else group_lr has one column per group.
  std::vector<ParamGroupInfo> param_groups;
  // The run's full configuration as TOML (lrfind_dist --config reads it back); stored
  // as the "config" attribute and in the JSON summary when not empty. Library callers
  // leave it empty.
  std::string config;
};

}  // namespace lrfind::runtime
