#pragma once
// CPU threading for LibTorch and the BLAS underneath it.

namespace lrfind::runtime {

// Sets LibTorch's intra-op threads to `n` and, when the process runs on OpenBLAS
// (Debian's libopenblas0-pthread), OpenBLAS's own pool too: at::set_num_threads does not
// reach it, and a pool sized for every core competes with other ranks and threads.
void setComputeThreads(int n);

}  // namespace lrfind::runtime
