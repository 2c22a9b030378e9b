#include "finder/options.h"

#include <cmath>

#include "common/error.h"

namespace lrfind::finder {

std::string fieldName(const char* field) { return field; }

void validate(const SweepOptions& o, OptionNamer name) {
  LRFIND_INPUT_CHECK(std::isfinite(o.min_lr) && o.min_lr > 0, name("min_lr"), " must be a positive number, got ",
                     o.min_lr);
  LRFIND_INPUT_CHECK(std::isfinite(o.max_lr) && o.max_lr > o.min_lr, name("max_lr"), " must be greater than ",
                     name("min_lr"), " (", o.min_lr, "), got ", o.max_lr);
  LRFIND_INPUT_CHECK(o.num_training >= 2, name("num_training"), " must be at least 2, got ", o.num_training);
  LRFIND_INPUT_CHECK(o.beta >= 0 && o.beta < 1, name("beta"), " must be in [0, 1), got ", o.beta);
  if (o.early_stop_threshold) {
    LRFIND_INPUT_CHECK(std::isfinite(*o.early_stop_threshold) && *o.early_stop_threshold > 0,
                       name("early_stop_threshold"), " must be a positive number or \"none\", got ",
                       *o.early_stop_threshold);
  }
  LRFIND_INPUT_CHECK(o.skip_begin >= 0, name("skip_begin"), " must be >= 0, got ", o.skip_begin);
  LRFIND_INPUT_CHECK(o.skip_end >= 0, name("skip_end"), " must be >= 0, got ", o.skip_end);
  LRFIND_INPUT_CHECK(o.accumulate >= 1, name("accumulate"), " must be >= 1, got ", o.accumulate);
}
const char* toString(Mode mode) {
  return mode == Mode::kExponential ? "exponential" : "linear";
}

const char* toString(SuggestMethod method) {
  switch (method) {
    case SuggestMethod::kSteepest: return "steepest";
    case SuggestMethod::kValley: return "valley";
    case SuggestMethod::kMinimum: return "minimum";
    case SuggestMethod::kSteep: return "steep";
    case SuggestMethod::kSlide: return "slide";
  }
  return "?";
}

const char* toString(StopReason reason) {
  switch (reason) {
    case StopReason::kRunning: return "running";
    case StopReason::kCompleted: return "completed";
    case StopReason::kDiverged: return "diverged";
    case StopReason::kNonFinite: return "nonfinite";
    case StopReason::kError: return "error";
    case StopReason::kInterrupted: return "interrupted";
    case StopReason::kTimeout: return "timeout";
  }
  return "?";
}

const char* toString(Monitor monitor) {
  return monitor == Monitor::kTrain ? "train" : "val";
}

const char* toString(Precision precision) {
  switch (precision) {
    case Precision::kFp32: return "fp32";
    case Precision::kBf16: return "bf16";
    case Precision::kFp16: return "fp16";
  }
  return "?";
}

bool endedNormally(StopReason reason) {
  return reason == StopReason::kCompleted || reason == StopReason::kDiverged || reason == StopReason::kNonFinite;
}

Mode parseMode(const std::string& text, OptionNamer name) {
  for (auto m : {Mode::kExponential, Mode::kLinear}) {
    if (text == toString(m)) return m;
  }
  throw InputError(concat(name("mode"), " must be exponential or linear, got \"", text, "\""));
}

Monitor parseMonitor(const std::string& text, OptionNamer name) {
  for (auto m : {Monitor::kTrain, Monitor::kVal}) {
    if (text == toString(m)) return m;
  }
  throw InputError(concat(name("monitor"), " must be train or val, got \"", text, "\""));
}

Precision parsePrecision(const std::string& text, OptionNamer name) {
  for (auto p : {Precision::kFp32, Precision::kBf16, Precision::kFp16}) {
    if (text == toString(p)) return p;
  }
  throw InputError(concat(name("precision"), " must be fp32, bf16 or fp16, got \"", text, "\""));
}

const std::vector<SuggestMethod>& allSuggestMethods() {
  static const std::vector<SuggestMethod> kAll = {
      SuggestMethod::kSteepest, SuggestMethod::kValley, SuggestMethod::kMinimum,
      SuggestMethod::kSteep, SuggestMethod::kSlide};
  return kAll;
}

SuggestMethod parseSuggestMethod(const std::string& text, OptionNamer name) {
  std::string names;
  for (auto m : allSuggestMethods()) {
    if (text == toString(m)) return m;
    names += concat(names.empty() ? "" : ", ", toString(m));
  }
  throw InputError(concat(name("suggest"), " must be one of ", names, "; got \"", text, "\""));
}

}  // namespace lrfind::finder
