#include "runtime/placement.h"

#include <unistd.h>

#include <cstdio>
#include <map>
#include <vector>

#include <ATen/ATen.h>
#include <torch/cuda.h>

#include "comm/agreement.h"
#include "comm/staged_communicator.h"
#include "common/error.h"
#include "lrfind/config.h"
#include "runtime/torch_message.h"

#if LRFIND_TORCH_HAS_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAFunctions.h>
#endif
#if LRFIND_HAVE_NCCL
#include "comm/nccl_communicator.h"
#endif

namespace lrfind::runtime {
namespace {

// What LibTorch's CUDA runtime reads of the device: its UUID, else its PCI address.
std::string libtorchGpuIdentity(int device) {
#if LRFIND_TORCH_HAS_CUDA
  const cudaDeviceProp* p = nullptr;
  try {
    p = at::cuda::getDeviceProperties(device);
  } catch (const std::exception&) {
    return {};
  }
  if (p == nullptr) return {};
  const auto* uuid = reinterpret_cast<const unsigned char*>(p->uuid.bytes);
  bool known = false;
  for (int i = 0; i < 16; ++i) known = known || uuid[i] != 0;
  if (known) {
    // nvidia-smi's spelling: GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx.
    std::string text = "GPU-";
    char hex[3];
    for (int i = 0; i < 16; ++i) {
      if (i == 4 || i == 6 || i == 8 || i == 10) text += '-';
      std::snprintf(hex, sizeof(hex), "%02x", uuid[i]);
      text += hex;
    }
    return text;
  }
  if (p->pciBusID != 0 || p->pciDeviceID != 0 || p->pciDomainID != 0) {
    char bus[32];
    std::snprintf(bus, sizeof(bus), "%04x:%02x:%02x.0", static_cast<unsigned>(p->pciDomainID),
                  static_cast<unsigned>(p->pciBusID), static_cast<unsigned>(p->pciDeviceID));
    return bus;
  }
#else
  (void)device;
#endif
  return {};
}

std::function<std::string(int)>& identitySource() {
  static std::function<std::string(int)> source;
  return source;
}

// gatherText's text for a rank on the CPU, and for a GPU whose identity is unknown.
constexpr const char* kOnCpu = "";
constexpr const char* kUnknownGpu = "?";

}  // namespace

int libtorchGpus() { return static_cast<int>(torch::cuda::device_count()); }

std::string gpuIdentity(int device) {
  const auto& source = identitySource();
  return source ? source(device) : libtorchGpuIdentity(device);
}

void setGpuIdentityForTesting(std::function<std::string(int device)> source) { identitySource() = std::move(source); }

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

void useDevice(const c10::Device& device) {
  if (!device.is_cuda()) return;
  try {
#if LRFIND_TORCH_HAS_CUDA
    c10::cuda::set_device(device.index());
#endif
    at::zeros({1}, at::TensorOptions().device(device)).item();
  } catch (const std::exception& e) {
    throw Error(concat("cannot use ", device.str(), " (", libtorchGpus(), " GPU(s) visible): ", oneLine(e.what()),
                       "; check that no other job holds it (exclusive-process mode) and nvidia-smi"));
  }
}

bool checkGpuSharing(comm::Communicator& comm, const c10::Device& device, const std::string& name, bool allowed) {
  std::string key = kOnCpu;
  if (device.is_cuda()) {
    char host[64] = {0};
    ::gethostname(host, sizeof(host) - 1);
    const std::string id = gpuIdentity(device.index());
    key = id.empty() ? kUnknownGpu : concat(host, " GPU ", id);
  }
  const std::vector<std::string> keys = comm::gatherText(comm, 0, key);
  at::Tensor shared = at::zeros({2}, at::kLong);  // {first rank, second rank} + 1 on one GPU
  std::string where;
  std::map<std::string, int> owner;
  std::vector<int> unknown;
  for (int r = 0; r < static_cast<int>(keys.size()); ++r) {
    const std::string& k = keys[static_cast<std::size_t>(r)];
    if (k == kUnknownGpu) unknown.push_back(r);
    if (k == kOnCpu || k == kUnknownGpu || shared[0].item<int64_t>() != 0) continue;
    const auto [it, fresh] = owner.emplace(k, r);
    if (!fresh) {
      shared[0] = it->second + 1;
      shared[1] = r + 1;
      where = k;
    }
  }
  if (!unknown.empty()) {
    std::string ranks;
    for (const int r : unknown) ranks += concat(ranks.empty() ? "" : ", ", r);
    std::fprintf(stderr,
                 "lrfind_dist: warning: --device %s: LibTorch reads neither the UUID nor the PCI bus id of the GPU of "
                 "rank(s) %s; not checking whether they share a GPU with another rank\n",
                 name.c_str(), ranks.c_str());
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
  options.wait = control.waitPolicy();  // init_timeout: NcclOptions' rule from it
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
