#include "runtime/param_groups.h"

#include <cmath>
#include <cstdlib>
#include <regex>

#include "common/error.h"

namespace lrfind::runtime {
namespace {

constexpr std::size_t kNamesListed = 6;

std::regex compile(const std::string& pattern, const std::string& text) {
  try {
    return std::regex(pattern, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    throw InputError(concat("--param-group ", text, ": '", pattern, "' is not a valid regular expression (", e.what(),
                            ")"));
  }
}

}  // namespace

ParamGroupSpec parseParamGroup(const std::string& text) {
  const auto eq = text.rfind('=');
  LRFIND_INPUT_CHECK(eq != std::string::npos && eq > 0 && eq + 1 < text.size(), "--param-group must be REGEX=MULT "
                     "(e.g. '^backbone\\.=0.1'), got \"", text, "\"");
  ParamGroupSpec spec;
  spec.pattern = text.substr(0, eq);
  const std::string mult = text.substr(eq + 1);
  char* end = nullptr;
  spec.multiplier = std::strtod(mult.c_str(), &end);
  LRFIND_INPUT_CHECK(end != mult.c_str() && *end == '\0' && std::isfinite(spec.multiplier) && spec.multiplier > 0,
                     "--param-group ", text, ": the multiplier must be a positive number, got \"", mult, "\"");
  compile(spec.pattern, text);
  return spec;
}

bool noDecay(const finder::NamedParameter& p) {
  const auto dot = p.name.rfind('.');
  const std::string last = dot == std::string::npos ? p.name : p.name.substr(dot + 1);
  return last == "bias" || p.tensor.dim() == 1 || p.module_type.find("Norm") != std::string::npos;
}

std::vector<ParamGroup> planParamGroups(const std::vector<finder::NamedParameter>& params,
                                        const std::vector<ParamGroupSpec>& specs, bool no_decay_bias_norm,
                                        double weight_decay) {
  LRFIND_INPUT_CHECK(!params.empty() || (specs.empty() && !no_decay_bias_norm),
                     "--param-group and --no-decay-bias-norm need a model that names its parameters");
  std::vector<std::regex> patterns;
  for (const auto& s : specs) patterns.push_back(compile(s.pattern, concat(s.pattern, "=", s.multiplier)));
  // Slot 2i: pattern i's group (i = 0: the default group, the patterns from 1); 2i + 1:
  // its no-decay twin.
  std::vector<ParamGroup> slots(2 * (specs.size() + 1));
  for (std::size_t i = 0; i < slots.size(); ++i) {
    ParamGroupInfo& info = slots[i].info;
    info.pattern = i < 2 ? std::string() : specs[i / 2 - 1].pattern;
    info.multiplier = i < 2 ? 1.0 : specs[i / 2 - 1].multiplier;
    info.weight_decay = i % 2 == 0 ? weight_decay : 0.0;
  }
  for (const auto& p : params) {
    std::size_t group = 0;
    for (std::size_t i = 0; i < patterns.size() && group == 0; ++i) {
      if (std::regex_search(p.name, patterns[i])) group = i + 1;
    }
    ParamGroup& slot = slots[2 * group + (no_decay_bias_norm && noDecay(p) ? 1 : 0)];
    slot.params.push_back(p.tensor);
    slot.info.names.push_back(p.name);
    slot.info.numel += p.tensor.numel();
  }
  for (std::size_t i = 0; i < specs.size(); ++i) {
    if (!slots[2 * i + 2].params.empty() || !slots[2 * i + 3].params.empty()) continue;
    std::string names;
    for (std::size_t j = 0; j < params.size() && j < kNamesListed; ++j) {
      names += concat(j ? ", " : "", params[j].name);
    }
    if (params.size() > kNamesListed) names += concat(", ... (", params.size(), " in all)");
    throw InputError(concat("--param-group ", specs[i].pattern, "=", specs[i].multiplier,
                            ": the pattern matches no parameter of the model (an earlier pattern may have taken "
                            "them; the first match wins); its parameters: ",
                            names));
  }
  std::vector<ParamGroup> groups;
  for (auto& slot : slots) {
    if (!slot.params.empty()) groups.push_back(std::move(slot));
  }
  return groups;
}

}  // namespace lrfind::runtime
