#include "finder/precision.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include "common/error.h"

namespace lrfind::finder {
namespace {

// LibTorch 2.4 made autocast's switches per device type; 1.x and 2.0-2.3 have one per
// backend. Only CPU and CUDA are swept.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
bool enabled(c10::DeviceType d) { return at::autocast::is_autocast_enabled(d); }
void setEnabled(c10::DeviceType d, bool on) { at::autocast::set_autocast_enabled(d, on); }
c10::ScalarType dtype(c10::DeviceType d) { return at::autocast::get_autocast_dtype(d); }
void setDtype(c10::DeviceType d, c10::ScalarType t) { at::autocast::set_autocast_dtype(d, t); }
#else
bool enabled(c10::DeviceType d) {
  return d == c10::DeviceType::CUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
}
void setEnabled(c10::DeviceType d, bool on) {
  if (d == c10::DeviceType::CUDA) {
    at::autocast::set_enabled(on);
  } else {
    at::autocast::set_cpu_enabled(on);
  }
}
c10::ScalarType dtype(c10::DeviceType d) {
  return d == c10::DeviceType::CUDA ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
}
void setDtype(c10::DeviceType d, c10::ScalarType t) {
  if (d == c10::DeviceType::CUDA) {
    at::autocast::set_autocast_gpu_dtype(t);
  } else {
    at::autocast::set_autocast_cpu_dtype(t);
  }
}
#endif

}  // namespace

void LossScaler::update(bool finite) {
  if (!finite) {
    scale_ *= 0.5;
    finite_steps_ = 0;
  } else if (++finite_steps_ == 2000) {
    scale_ *= 2.0;
    finite_steps_ = 0;
  }
}

AutocastGuard::AutocastGuard(Precision precision, c10::DeviceType device) : device_(device) {
  if (precision == Precision::kFp32) return;
  LRFIND_CHECK(device == c10::DeviceType::CPU || device == c10::DeviceType::CUDA, "autocast on device type ",
               c10::DeviceTypeName(device));
  LRFIND_INPUT_CHECK(precision != Precision::kFp16 || device == c10::DeviceType::CUDA,
                     "precision fp16 needs a CUDA device (LibTorch has no float16 autocast on CPU); use bf16");
  was_enabled_ = enabled(device);
  was_dtype_ = dtype(device);
  setEnabled(device, true);
  setDtype(device, precision == Precision::kFp16 ? c10::ScalarType::Half : c10::ScalarType::BFloat16);
  at::autocast::increment_nesting();
  active_ = true;
}

AutocastGuard::~AutocastGuard() {
  if (!active_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  setDtype(device_, was_dtype_);
  setEnabled(device_, was_enabled_);
}

}  // namespace lrfind::finder
