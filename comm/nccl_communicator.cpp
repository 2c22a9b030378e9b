#include "comm/nccl_communicator.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <thread>
#include <utility>

#include <ATen/ATen.h>

#include "common/error.h"
#include "lrfind/config.h"

#if LRFIND_TORCH_HAS_CUDA
#include <c10/cuda/CUDAStream.h>
#endif

namespace lrfind::comm {
namespace {


// Throws CommError("<call> failed on rank R: <CUDA's error string>").
#define LRFIND_CUDA_CHECK(call, rank)                                                              \
  do {                                                                                             \
    const cudaError_t lrfind_cuda_rc = (call);                                                     \
    if (lrfind_cuda_rc != cudaSuccess) {                                                           \
      throw ::lrfind::CommError(                                                                   \
          ::lrfind::concat(#call, " failed on rank ", (rank), ": ", cudaGetErrorString(lrfind_cuda_rc))); \
    }                                                                                              \
  } while (0)

ncclDataType_t ncclType(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return ncclFloat32;
    case at::kDouble: return ncclFloat64;
    case at::kHalf: return ncclFloat16;
    case at::kBFloat16: return ncclBfloat16;
    case at::kInt: return ncclInt32;
    case at::kLong: return ncclInt64;
    case at::kByte: return ncclUint8;
    default:
      throw CommError(concat("the NCCL backend does not take tensors of dtype ", t.scalar_type(),
                             " (float32/64, float16, bfloat16, int32/64 and uint8 only)"));
  }
}

ncclRedOp_t ncclOp(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return ncclSum;
    case ReduceOp::kMin: return ncclMin;
    case ReduceOp::kMax: return ncclMax;
  }
  // Any int converts to ReduceOp: a value outside the enum is an error, not a sum.
  throw CommError(concat("the NCCL backend has no reduce op ", static_cast<int>(op)));
}

}  // namespace

// One ncclComm_t, created non-blocking so that every wait on it can be bounded.
// Destroyed on scope exit unless abort() already tore it down.
class NcclComm {
 public:
  NcclComm(const ncclUniqueId& id, int rank, int size, const Communicator& owner)
      : rank_(rank), owner_(owner) {
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    check(ncclCommInitRankConfig(&comm_, size, id, rank, &config), "ncclCommInitRankConfig");
    waitReady("joining the NCCL communicator (ncclCommInitRankConfig)");
  }

  ~NcclComm() {
    if (comm_ == nullptr) return;
    // Finalize flushes outstanding work; if that does not finish in time, abort.
    try {
      check(ncclCommFinalize(comm_), "ncclCommFinalize");
      waitReady("finalizing the NCCL communicator");
      const ncclResult_t rc = ncclCommDestroy(comm_);
      if (rc != ncclSuccess) {
        std::fprintf(stderr, "lrfind: warning: ncclCommDestroy failed on rank %d: %s\n", rank_,
                     ncclGetErrorString(rc));
      }
    } catch (const std::exception& e) {
      // waitReady/check aborted already; the message says why.
      std::fprintf(stderr, "lrfind: warning: %s\n", e.what());
      abort();
    }
  }

  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;

  ncclComm_t get() const {
    if (comm_ == nullptr) throw CommError(concat("NCCL communicator on rank ", rank_, " was aborted"));
    return comm_;
  }

  // Never throws; a failed ncclCommAbort is logged (there is nothing else to do).
  void abort() noexcept {
    if (comm_ == nullptr) return;
    const ncclResult_t rc = ncclCommAbort(comm_);
    comm_ = nullptr;
    if (rc != ncclSuccess) {
      std::fprintf(stderr, "lrfind: warning: ncclCommAbort failed on rank %d: %s\n", rank_, ncclGetErrorString(rc));
    }
  }

  // An NCCL call's immediate result: success, in progress (a non-blocking comm still
  // working on it: wait), or an error (abort and throw).
  void check(ncclResult_t rc, const char* call) {
    if (rc == ncclSuccess) return;
    if (rc == ncclInProgress) {
      waitReady(call);
      return;
    }
    fail(concat(call, " failed on rank ", rank_, ": ", ncclGetErrorString(rc), lastError()));
  }

  // Polls the communicator's state until it leaves ncclInProgress, within the owner's
  // wait policy.
  void waitReady(const std::string& what) {
    wait([&] { return asyncState(what) != ncclInProgress; }, what);
  }

  // boundedWait on `done`; a timeout aborts the communicator first (its work may still be
  // queued on the device) and says so.
  void wait(const std::function<bool()>& done, const std::string& what) {
    try {
      boundedWait(done, owner_.waitPolicy(), owner_.label(), [&] { return concat("the other ranks (", what, ")"); });
    } catch (const CommTimeout& e) {
      abort();
      throw CommTimeout(concat(e.what(), " on rank ", rank_, "; the NCCL communicator was aborted. Another rank "
                               "may have died or stalled (rerun with NCCL_DEBUG=INFO)"));
    }
  }

  // ncclSuccess or ncclInProgress; an asynchronous NCCL error aborts and throws.
  ncclResult_t asyncState(const std::string& what) {
    ncclResult_t state = ncclSuccess;
    const ncclResult_t rc = ncclCommGetAsyncError(get(), &state);
    if (rc != ncclSuccess) state = rc;
    if (state != ncclSuccess && state != ncclInProgress) {
      fail(concat(what, " on rank ", rank_, ": NCCL error ", ncclGetErrorString(state), lastError()));
    }
    return state;
  }

 private:
  [[noreturn]] void fail(const std::string& message) {
    abort();
    throw CommError(message);
  }

  std::string lastError() const {
    const char* text = comm_ != nullptr ? ncclGetLastError(comm_) : nullptr;
    return text != nullptr && text[0] != '\0' ? concat(" (", text, ")") : std::string();
  }

  ncclComm_t comm_ = nullptr;
  int rank_;
  const Communicator& owner_;  // its wait policy and label
};

NcclCommunicator::NcclCommunicator(Communicator& bootstrap, const NcclOptions& options)
    : options_(options), uncaught_at_start_(std::uncaught_exceptions()), rank_(bootstrap.rank()),
      size_(bootstrap.size()) {
  LRFIND_CHECK(options_.wait.timeout.count() > 0, options_.wait.timeout_option, " must be positive, got ",
               options_.wait.timeout.count(), " ms");
  setWaitPolicy(options_.wait);
  LRFIND_CUDA_CHECK(cudaSetDevice(options_.device), rank_);
  ncclUniqueId id;
  std::memset(&id, 0, sizeof(id));
  std::string id_error;
  if (rank_ == 0) {
    const ncclResult_t rc = ncclGetUniqueId(&id);
    if (rc != ncclSuccess) id_error = ncclGetErrorString(rc);
  }
  // Rank 0's id, or an all-zero id plus a failure flag, reaches every rank, so a failure
  // on rank 0 ends every rank here instead of leaving them waiting in init.
  at::Tensor wire = at::zeros({static_cast<int64_t>(sizeof(id)) + 1}, at::kByte);
  std::memcpy(wire.data_ptr(), &id, sizeof(id));
  wire.data_ptr<uint8_t>()[sizeof(id)] = id_error.empty() ? 0 : 1;
  bootstrap.broadcast(wire);
  if (wire.data_ptr<uint8_t>()[sizeof(id)] != 0) {
    throw CommError(concat("ncclGetUniqueId failed on rank 0", id_error.empty() ? "" : ": ", id_error));
  }
  std::memcpy(&id, wire.data_ptr(), sizeof(id));
  comm_ = std::make_unique<NcclComm>(id, rank_, size_, *this);
}

NcclCommunicator::~NcclCommunicator() {
  // Unwinding means a failure here or an agreed one: do not wait for peers to finalize.
  if (std::uncaught_exceptions() > uncaught_at_start_) abort();
}

void* NcclCommunicator::stream() const {
#if LRFIND_TORCH_HAS_CUDA
  return c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(options_.device)).stream();
#else
  return nullptr;  // the legacy default stream: what LibTorch uses unless told otherwise
#endif
}

namespace {

void checkDeviceTensor(const at::Tensor& t, int device, const char* call) {
  LRFIND_CHECK(t.is_cuda() && t.get_device() == device, "NCCL ", call, " needs a tensor on cuda:", device,
               ", got one on ", t.device());
  LRFIND_CHECK(t.is_contiguous(), "NCCL ", call, " needs a contiguous tensor");
}

}  // namespace

void NcclCommunicator::allreduce(at::Tensor& tensor, const AllreduceOptions& opts) {
  checkDeviceTensor(tensor, options_.device, "allreduce");
  comm_->check(ncclAllReduce(tensor.data_ptr(), tensor.data_ptr(), static_cast<size_t>(tensor.numel()),
                             ncclType(tensor), ncclOp(opts.op), comm_->get(),
                             static_cast<cudaStream_t>(stream())),
               "ncclAllReduce");
}

void NcclCommunicator::broadcast(at::Tensor& tensor, const BroadcastOptions& opts) {
  checkDeviceTensor(tensor, options_.device, "broadcast");
  LRFIND_CHECK(opts.root >= 0 && opts.root < size_, "broadcast root ", opts.root, " is not a rank");
  comm_->check(ncclBroadcast(tensor.data_ptr(), tensor.data_ptr(), static_cast<size_t>(tensor.numel()),
                             ncclType(tensor), opts.root, comm_->get(), static_cast<cudaStream_t>(stream())),
               "ncclBroadcast");
}

void NcclCommunicator::gather(const at::Tensor& input, at::Tensor& output, const GatherOptions& opts) {
  // Every check before anything is enqueued: a throw must not leave an NCCL group open.
  checkDeviceTensor(input, options_.device, "gather");
  LRFIND_CHECK(opts.root >= 0 && opts.root < size_, "gather root ", opts.root, " is not a rank");
  const ncclDataType_t type = ncclType(input);
  const auto count = static_cast<size_t>(input.numel());
  const auto s = static_cast<cudaStream_t>(stream());
  if (rank_ != opts.root) {
    comm_->check(ncclSend(input.data_ptr(), count, type, opts.root, comm_->get(), s), "ncclSend");
    return;
  }
  checkDeviceTensor(output, options_.device, "gather");
  LRFIND_CHECK(output.numel() == input.numel() * size_ && output.scalar_type() == input.scalar_type(),
               "gather output must hold ", size_, " x ", input.numel(), " elements of ", input.scalar_type());
  const ncclComm_t comm = comm_->get();
  auto* out = static_cast<char*>(output.data_ptr());
  const size_t bytes = count * input.element_size();
  LRFIND_CUDA_CHECK(cudaMemcpyAsync(out + bytes * rank_, input.data_ptr(), bytes, cudaMemcpyDeviceToDevice, s),
                    rank_);
  comm_->check(ncclGroupStart(), "ncclGroupStart");
  for (int r = 0; r < size_; ++r) {
    if (r == rank_) continue;
    comm_->check(ncclRecv(out + bytes * r, count, type, r, comm, s), "ncclRecv");
  }
  comm_->check(ncclGroupEnd(), "ncclGroupEnd");
}

void NcclCommunicator::barrier() {
  at::Tensor one = at::ones({1}, at::TensorOptions().dtype(at::kFloat).device(at::kCUDA, options_.device));
  allreduce(one);
  synchronize();
}

void NcclCommunicator::synchronize() {
  const auto s = static_cast<cudaStream_t>(stream());
  cudaEvent_t done = nullptr;
  LRFIND_CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), rank_);
  struct EventGuard {
    cudaEvent_t event;
    ~EventGuard() { cudaEventDestroy(event); }
  } guard{done};
  LRFIND_CUDA_CHECK(cudaEventRecord(done, s), rank_);
  const char* what = "NCCL collectives";
  comm_->wait(
      [&] {
        const cudaError_t rc = cudaEventQuery(done);
        if (rc == cudaSuccess) return true;
        if (rc != cudaErrorNotReady) LRFIND_CUDA_CHECK(rc, rank_);
        comm_->asyncState(what);
        return false;
      },
      what);
}

void NcclCommunicator::abort() noexcept {
  if (comm_) comm_->abort();
}

std::string ncclRuntimeVersion() {
  int code = 0;
  if (ncclGetVersion(&code) != ncclSuccess) return "unknown";
  // NCCL_VERSION(X,Y,Z) is X*10000 + Y*100 + Z since 2.9.
  return concat(code / 10000, ".", (code % 10000) / 100, ".", code % 100);
}

}  // namespace lrfind::comm
