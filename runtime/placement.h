#pragma once
// Where this rank's model lives and how its tensors travel: the device (--device), the
// check that no two ranks share a GPU by accident, and the communicator for the
// model's tensors. Also what the CUDA runtime says about this process's GPUs.
//
// The CUDA queries work, and report no GPU, on a machine without a driver; in a build
// without the CUDA toolkit they always report none.

#include <memory>
#include <string>

#include <c10/core/Device.h>

#include "comm/communicator.h"

namespace lrfind::runtime {

// cudaGetDeviceCount: GPUs visible to this process (after CUDA_VISIBLE_DEVICES).
int cudaVisibleDevices();

// A name for the physical GPU behind `device`, the same in every process that sees it
// whatever its CUDA_VISIBLE_DEVICES: the PCI bus id ("0000:3B:00.0"). Empty when unknown.
std::string cudaDeviceBusId(int device);

// --device: "auto" = CUDA when LibTorch has it and a GPU is visible, else CPU; "cpu";
// "cuda" (InputError when no GPU is usable). On CUDA, node-local rank r takes visible
// GPU r mod count (with one GPU per rank through CUDA_VISIBLE_DEVICES, as srun
// --gpus-per-task does, every rank takes its GPU 0).
c10::Device resolveDevice(const std::string& name, int local_rank);

// Every rank's physical GPU, compared on rank 0: two ranks on one GPU need
// `allowed` (--allow-gpu-sharing; NCCL cannot put two ranks on one device), else every
// rank throws the same agreed InputError naming the ranks. `name` is what the user asked
// for (--device's value), for the message. Collective; returns, on every rank, whether
// any GPU is shared.
bool checkGpuSharing(comm::Communicator& comm, const c10::Device& device, const std::string& name, bool allowed);

// The communicator for the model's tensors: none (nullptr) on CPU or in a world of one;
// NCCL for one GPU per rank, with `control`'s wait policy and peer names; host staging
// over `control` when ranks share a GPU. A build without NCCL throws an agreed InputError for
// CUDA with several ranks. Collective.
std::unique_ptr<comm::Communicator> makeTensorComm(comm::Communicator& control, const c10::Device& device,
                                                   bool gpu_shared);

// " (NCCL library now: 2.28.9)" for --version, or "" in a build without NCCL.
std::string ncclLibraryText();

}  // namespace lrfind::runtime
