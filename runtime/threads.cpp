#include "runtime/threads.h"

#include <dlfcn.h>

#include <ATen/Parallel.h>

namespace lrfind::runtime {

void setComputeThreads(int n) {
  at::set_num_threads(n);
  // Looked up at run time: the BLAS is whatever libblas.so.3 resolves to on this host.
  using SetThreads = void (*)(int);
  if (auto* set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) {
    set(n);
  }
}

}  // namespace lrfind::runtime
