#pragma once
// Parameter groups (--param-group REGEX=MULT, --no-decay-bias-norm): which of the model's
// parameters train at which multiple of the scheduled lr, and which without weight decay.
//
// A parameter belongs to the first --param-group whose REGEX matches somewhere in its
// name (std::regex_search, ECMAScript: anchor with ^ and $), else to the default group
// (multiplier 1). With --no-decay-bias-norm every such group splits in two: the
// parameters exempt from weight decay (noDecay()) go into a twin with weight decay 0.
// The default group comes first: it follows the schedule, and the sweep's lr, stop rule
// and suggestions are its lr.

#include <cstdint>
#include <string>
#include <vector>

#include "finder/model.h"
#include "runtime/run_info.h"

namespace lrfind::runtime {

struct ParamGroupSpec {
  std::string pattern;  // the REGEX
  double multiplier = 1;
};

// "REGEX=MULT", split at the last '='. Throws InputError naming --param-group when REGEX
// is empty or not a valid regex, or MULT is not a positive finite number.
ParamGroupSpec parseParamGroup(const std::string& text);

// Whether --no-decay-bias-norm exempts `p` from weight decay: its name's last part is
// "bias", it has one dimension (biases, norm scales, embeddings' 1-D vectors), or its
// module's type name contains "Norm" (BatchNorm1d/2d/3d, LayerNorm, GroupNorm,
// InstanceNorm*, RMSNorm: their weights of any shape).
bool noDecay(const finder::NamedParameter& p);

struct ParamGroup {
  ParamGroupInfo info;             // pattern, multiplier, weight decay, names, counts
  std::vector<at::Tensor> params;  // in the model's order
};

// The groups of `params`, empty ones left out: the default group, then its no-decay twin,
// then each pattern's group and twin in the order given. `weight_decay` is the
// optimizer's. Throws InputError when a pattern matches no parameter, listing a few names.
std::vector<ParamGroup> planParamGroups(const std::vector<finder::NamedParameter>& params,
                                        const std::vector<ParamGroupSpec>& specs, bool no_decay_bias_norm,
                                        double weight_decay);

}  // namespace lrfind::runtime
