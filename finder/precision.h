#pragma once
// Mixed precision for the sweep's forward passes (SweepOptions::precision).
//
// bf16: the forward pass and the loss run under LibTorch's autocast for the batch's
// device (CPU autocast since LibTorch 1.10, CUDA autocast): matrix products and
// convolutions in bfloat16, the numerically sensitive ops in float32, as
// torch.autocast(dtype=torch.bfloat16) does. Parameters, gradients and optimizer state
// stay float32 (the master weights); backward runs outside the guard, as in PyTorch.

#include <cstdint>

#include <c10/core/DeviceType.h>
#include <c10/core/ScalarType.h>

#include "finder/options.h"

namespace lrfind::finder {

// fp16: the same on CUDA in float16 (LibTorch has no float16 autocast on CPU), with
// dynamic loss scaling (LossScaler), which also runs alone with
// SweepOptions::dynamic_loss_scale.

// torch.cuda.amp.GradScaler's dynamic loss scale, with its defaults: the loss is
// multiplied by scale() before backward and the gradients divided by it before the
// update; a step whose gradients are not all finite is skipped and halves the scale,
// 2000 finite steps in a row double it.
class LossScaler {
 public:
  double scale() const { return scale_; }
  void update(bool finite);

 private:
  double scale_ = 65536.0;
  int64_t finite_steps_ = 0;
};

// Autocast on `device` in `dtype` while it lives, restoring what was set before. On
// leaving the outermost guard the cache of casted weights is cleared (the weights change
// at every step). A guard for Precision::kFp32 does nothing.
class AutocastGuard {
 public:
  AutocastGuard(Precision precision, c10::DeviceType device);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool active_ = false;
  c10::DeviceType device_;
  bool was_enabled_ = false;
  c10::ScalarType was_dtype_ = c10::ScalarType::Float;
};

}  // namespace lrfind::finder
