#include "comm/cuda_info.h"

#include "lrfind/config.h"

#if LRFIND_HAVE_CUDA_TOOLKIT
#include <cuda_runtime_api.h>
#endif

namespace lrfind::comm {

#if LRFIND_HAVE_CUDA_TOOLKIT

int cudaVisibleDevices() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // no driver or no device: clear the error, report none
    return 0;
  }
  return count;
}

std::string cudaDeviceBusId(int device) {
  char id[32] = {0};
  if (cudaDeviceGetPCIBusId(id, sizeof(id), device) != cudaSuccess) {
    cudaGetLastError();
    return {};
  }
  return id;
}

#else

int cudaVisibleDevices() { return 0; }
std::string cudaDeviceBusId(int) { return {}; }

#endif

}  // namespace lrfind::comm
