#pragma once
// Where this rank's model lives and how its tensors travel: the device (--device), the
// check that no two ranks share a GPU by accident, and the communicator for the
// model's tensors. Also what LibTorch says about this process's GPUs.
//
// Every GPU query goes through LibTorch (c10::cuda, at::cuda): the CUDA runtime that
// counts is LibTorch's, and lrfind links no CUDA runtime of its own beside it. With a
// LibTorch built without CUDA they report no GPU.

#include <functional>
#include <memory>
#include <string>

#include <c10/core/Device.h>

#include "comm/communicator.h"

namespace lrfind::runtime {

// GPUs that LibTorch sees in this process (after CUDA_VISIBLE_DEVICES); 0 without CUDA.
int libtorchGpus();

// A name for the physical GPU behind `device`, the same in every process that sees it
// whatever its CUDA_VISIBLE_DEVICES: the device UUID ("GPU-8f2c...", distinct for each
// MIG instance too) or else the PCI bus id ("0000:3b:00.0"); never the index, which is
// 0 in every rank under srun --gpus-per-task=1. Empty when neither can be read.
std::string gpuIdentity(int device);

// Test hook: replaces gpuIdentity's source (nullptr restores LibTorch's). Tests only.
void setGpuIdentityForTesting(std::function<std::string(int device)> source);

// --device: "auto" = CUDA when LibTorch has it and a GPU is visible, else CPU; "cpu";
// "cuda" (InputError when no GPU is usable). On CUDA, node-local rank r takes visible
// GPU r mod count (with one GPU per rank through CUDA_VISIBLE_DEVICES, as srun
// --gpus-per-task does, every rank takes its GPU 0).
c10::Device resolveDevice(const std::string& name, int local_rank);

// Makes `device` this thread's current CUDA device and checks that it works (a
// one-element allocation creates its context); nothing for the CPU. Throws Error
// naming the device and LibTorch's cause: a GPU in exclusive-process mode taken by
// another job, a broken device, an ordinal past the count.
void useDevice(const c10::Device& device);

// Every rank's physical GPU (gpuIdentity), compared on rank 0: two ranks on one GPU
// need `allowed` (--allow-gpu-sharing; NCCL cannot put two ranks on one device), else
// every rank throws the same agreed InputError naming the ranks. A rank whose GPU has no
// identity is left out of the comparison, and rank 0 warns once naming those ranks.
// `name` is what the user asked for (--device's value), for the message. Collective;
// returns, on every rank, whether any GPU is shared.
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
