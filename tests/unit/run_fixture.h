#pragma once
// A sweep's options and run facts as the results and report tests use them.

#include "finder/options.h"
#include "runtime/run_info.h"

namespace lrfind::testing {

inline finder::SweepOptions sampleOptions() {
  finder::SweepOptions o;
  o.min_lr = 1e-4;
  o.max_lr = 1;
  o.num_training = 30;
  o.skip_begin = 2;
  return o;
}

inline runtime::RunInfo sampleRunInfo() {
  runtime::RunInfo i;
  i.model = "mlp";
  i.data = "synthetic";
  i.optimizer = "sgd";
  i.loss_fn = "cross_entropy";
  i.device = "cpu";
  i.batch_size = 16;
  i.global_batch_size = 32;
  i.seed = 9;
  i.world_size = 2;
  return i;
}

}  // namespace lrfind::testing
