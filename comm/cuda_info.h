#pragma once
// What the CUDA runtime says about this process's GPUs, for device placement checks.
// Both functions work, and report no GPU, on a machine without a driver; in a build
// without the CUDA toolkit they always report none.

#include <string>

namespace lrfind::comm {

// cudaGetDeviceCount: GPUs visible to this process (after CUDA_VISIBLE_DEVICES).
int cudaVisibleDevices();

// A name for the physical GPU behind `device`, the same in every process that sees it
// whatever its CUDA_VISIBLE_DEVICES: the PCI bus id ("0000:3B:00.0"). Empty when unknown.
std::string cudaDeviceBusId(int device);

}  // namespace lrfind::comm
