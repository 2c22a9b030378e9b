#include "runtime/placement.h"

#include <unistd.h>

#include <map>

#include <ATen/ATen.h>
#include <torch/cuda.h>

#include "comm/agreement.h"
#include "comm/staged_communicator.h"
#include "common/error.h"
#include "lrfind/config.h"

#if LRFIND_HAVE_CUDA_TOOLKIT
#include <cuda_runtime_api.h>
#endif
#if LRFIND_HAVE_NCCL
#include "comm/nccl_communicator.h"
#endif

namespace lrfind::runtime {

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

c10::Device resolveDevice(const std::string& name, int local_rank) {
  LRFIND_INPUT_CHECK(name == "auto" || name == "cpu" || name == "cuda", "--device must be auto, cpu or cuda; got \"",
                     name, "\"");
  if (name == "cpu") return c10::Device(c10::DeviceType::CPU);
  const bool usable = torch::cuda::is_available();
  if (name == "auto" && !usable) return c10::Device(c10::DeviceType::CPU);
  LRFIND_INPUT_CHECK(usable, "--device cuda: no usable CUDA GPU (",
                     LRFIND_TORCH_HAS_CUDA ? "none visible to this process; check CUDA_VISIBLE_DEVICES and the driver"
                                           : "this LibTorch was built without CUDA",
                     "); use --device cpu or auto");
  const auto gpus = static_cast<int>(torch::cuda::device_count());
  return c10::Device(c10::DeviceType::CUDA, static_cast<c10::DeviceIndex>(local_rank % gpus));
}

bool checkGpuSharing(comm::Communicator& comm, const c10::Device& device, const std::string& name, bool allowed) {
  std::string key;
  if (device.is_cuda()) {
    char host[64] = {0};
    ::gethostname(host, sizeof(host) - 1);
    std::string bus = cudaDeviceBusId(device.index());
    if (bus.empty()) bus = concat("cuda:", static_cast<int>(device.index()));
    key = concat(host, " GPU ", bus);
  }
  const std::vector<std::string> keys = comm::gatherText(comm, 0, key);
  at::Tensor shared = at::zeros({2}, at::kLong);  // {first rank, second rank} + 1 on one GPU
  std::string where;
  std::map<std::string, int> owner;
  for (int r = 0; r < static_cast<int>(keys.size()) && shared[0].item<int64_t>() == 0; ++r) {
    const std::string& k = keys[static_cast<std::size_t>(r)];
    if (k.empty()) continue;
    const auto [it, fresh] = owner.emplace(k, r);
    if (!fresh) {
      shared[0] = it->second + 1;
      shared[1] = r + 1;
      where = k;
    }
  }
  comm::agreeOnSuccess(comm, [&] {
    if (comm.rank() != 0 || shared[0].item<int64_t>() == 0 || allowed) return;
    throw InputError(concat("--device ", name, ": ranks ", shared[0].item<int64_t>() - 1, " and ",
                            shared[1].item<int64_t>() - 1, " would share ", where,
                            " (more ranks on a node than GPUs visible to them); start one rank per GPU, "
                            "pass --allow-gpu-sharing (slower: gradients go through host memory), or use --device cpu"));
  });
  comm.broadcast(shared);
  return shared[0].item<int64_t>() != 0;
}

std::unique_ptr<comm::Communicator> makeTensorComm(comm::Communicator& control, const c10::Device& device,
                                                   bool gpu_shared) {
  if (!device.is_cuda() || control.size() == 1) return nullptr;
  if (gpu_shared) return std::make_unique<comm::StagedCommunicator>(control);
#if LRFIND_HAVE_NCCL
  comm::NcclOptions options;
  options.device = device.index();
  options.wait = control.waitPolicy();
  auto nccl = std::make_unique<comm::NcclCommunicator>(control, options);
  nccl->setPeerNames(control.peerNames());
  return nccl;
#else
  // The same on every rank (a property of this build): agreed without talking.
  throw comm::Agreed<InputError>(concat("--device cuda with ", control.size(),
                                        " ranks averages gradients with NCCL, and this build has none (configure with "
                                        "-DLRFIND_WITH_NCCL=ON and NCCL_HOME set); or use --device cpu"));
#endif
}

std::string ncclLibraryText() {
#if LRFIND_HAVE_NCCL
  return concat(" (NCCL library now: ", comm::ncclRuntimeVersion(), ")");
#else
  return {};
#endif
}

}  // namespace lrfind::runtime
