#pragma once
// What a sweep is asked to do. Plain data, no LibTorch: the CLI, the config and the
// results writer share it.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace lrfind::finder {

enum class Mode { kExponential, kLinear };

enum class SuggestMethod { kSteepest, kValley, kMinimum, kSteep, kSlide };

// Which loss drives the smoothing, the stop rule and the suggestions: the training
// loss of each step, or (validation mode) the loss over held-out data after the step.
enum class Monitor { kTrain, kVal };

// The precision of the forward pass and the loss (finder/precision.h); parameters,
// gradients and optimizer state stay float32. kFp16 (CUDA) also scales the loss.
enum class Precision { kFp32, kBf16, kFp16 };

// kInterrupted: a rank was asked to stop (SIGINT/SIGTERM) and every rank stopped at the
// same step; the result holds the steps done. kTimeout: a collective passed its
// deadline (a rank stalled or the network failed); rank 0's result holds the steps done.
enum class StopReason { kRunning, kCompleted, kDiverged, kNonFinite, kError, kInterrupted, kTimeout };

// The sweep came to an end of its own (completed, diverged, nonfinite), rather than
// being cut short by an error, an interruption or a timeout.
bool endedNormally(StopReason reason);

struct SweepOptions {
  double min_lr = 1e-8;
  double max_lr = 1.0;
  int64_t num_training = 100;
  Mode mode = Mode::kExponential;
  // Stop when smoothed loss > threshold * best; nullopt disables the check.
  std::optional<double> early_stop_threshold = 4.0;
  double beta = 0.98;
  SuggestMethod suggest = SuggestMethod::kSteepest;
  int64_t skip_begin = 10;
  int64_t skip_end = 1;
  // Micro-batches per optimizer step.
  int64_t accumulate = 1;
  // Restore model and optimizer state when the sweep ends (always, in the library).
  bool restore_state = true;
  // kVal needs held-out data (SweepContext::validation).
  Monitor monitor = Monitor::kTrain;
  Precision precision = Precision::kFp32;
  // Dynamic loss scaling (finder/precision.h LossScaler): always with kFp16; may be set
  // alone (any precision) for a model that overflows in its own way.
  bool dynamic_loss_scale = false;
  bool lossScaling() const { return dynamic_loss_scale || precision == Precision::kFp16; }
};

// How a message names an option. The library says the field as spelled in C++
// (fieldName: "min_lr"); a caller that knows the options by other names, such as the
// CLI's flags ("--min-lr"), passes its own. `field` is always a field name of
// SweepOptions (or of the caller's struct that holds the option).
using OptionNamer = std::string (*)(const char* field);
std::string fieldName(const char* field);

// Throws lrfind::InputError naming the option when a value is unusable.
void validate(const SweepOptions& options, OptionNamer name = fieldName);

const char* toString(Mode mode);
const char* toString(SuggestMethod method);
const char* toString(StopReason reason);
const char* toString(Monitor monitor);
const char* toString(Precision precision);
// Parse the names above; throw lrfind::InputError listing the valid names.
Mode parseMode(const std::string& text, OptionNamer name = fieldName);
Monitor parseMonitor(const std::string& text, OptionNamer name = fieldName);
Precision parsePrecision(const std::string& text, OptionNamer name = fieldName);
SuggestMethod parseSuggestMethod(const std::string& text, OptionNamer name = fieldName);

// Every method, in the order they are reported.
const std::vector<SuggestMethod>& allSuggestMethods();

}  // namespace lrfind::finder
