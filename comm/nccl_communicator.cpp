#include "comm/nccl_communicator.h"

#include <cuda_runtime_api.h>
#include <dlfcn.h>
#include <nccl.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <optional>
#include <string>
#include <utility>

#include <ATen/ATen.h>

#include "comm/agreement.h"
#include "common/error.h"
#include "lrfind/config.h"

#if LRFIND_TORCH_HAS_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace lrfind::comm {
namespace {


// "2.28.9" from NCCL_VERSION_CODE or ncclGetVersion: X*10000 + Y*100 + Z since 2.9,
// X*1000 + Y*100 + Z before.
std::string versionText(int code) {
  if (code >= 10000) return concat(code / 10000, ".", (code % 10000) / 100, ".", code % 100);
  return concat(code / 1000, ".", (code % 1000) / 100, ".", code % 100);
}

#if LRFIND_TORCH_HAS_CUDA
// The first line of LibTorch's message, without its C++ backtrace.
std::string causeOf(const std::exception& e) {
  const auto* torch_error = dynamic_cast<const c10::Error*>(&e);
  std::string text = torch_error != nullptr ? torch_error->what_without_backtrace() : e.what();
  const auto eol = text.find('\n');
  return eol == std::string::npos ? text : text.substr(0, eol);
}
#endif

// Makes `device` this thread's current CUDA device: through LibTorch where it has CUDA
// (its runtime is the one that counts), else the toolkit's runtime (a build for
// compiling and linking only: without CUDA in LibTorch there are no CUDA tensors).
void selectDevice(int device, int rank) {
  const auto failed = [&](const std::string& cause) {
    return CommError(concat("setting the device cuda:", device, " failed on rank ", rank, ": ", cause));
  };
#if LRFIND_TORCH_HAS_CUDA
  try {
    c10::cuda::set_device(static_cast<c10::DeviceIndex>(device));
  } catch (const std::exception& e) {
    throw failed(concat("c10::cuda::set_device: ", causeOf(e)));
  }
#else
  const cudaError_t rc = cudaSetDevice(device);
  if (rc != cudaSuccess) {
    cudaGetLastError();  // clear it: the error is reported here
    throw failed(concat("cudaSetDevice: ", cudaGetErrorString(rc)));
  }
#endif
}

// A CUDA call on `device` that failed, as a CommError.
CommError cudaFailure(const char* call, int device, int rank, const std::string& cause) {
  return CommError(concat(call, " on cuda:", device, " failed on rank ", rank, ": ", cause));
}

// The streams and events of the asynchronous allreduce, through LibTorch where it has
// CUDA, else through the toolkit's runtime (as selectDevice).
#if LRFIND_TORCH_HAS_CUDA
using Stream = c10::cuda::CUDAStream;

cudaStream_t raw(const Stream& stream) { return stream.stream(); }

Stream currentStream(int device) {
  return c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(device));
}

// Runs `f`, which calls LibTorch's CUDA API; its error becomes a CommError.
template <typename F>
decltype(auto) viaTorch(const char* call, int device, int rank, F&& f) {
  try {
    return f();
  } catch (const std::exception& e) {
    throw cudaFailure(call, device, rank, causeOf(e));
  }
}
#else
using Stream = cudaStream_t;

cudaStream_t raw(const Stream& stream) { return stream; }

Stream currentStream(int /*device*/) { return nullptr; }  // the legacy default stream, as stream()

void cudartCheck(cudaError_t rc, const char* call, int device, int rank) {
  if (rc == cudaSuccess) return;
  cudaGetLastError();  // clear it: the error is reported here
  throw cudaFailure(call, device, rank, cudaGetErrorString(rc));
}

// The same in a destructor, which must not throw: "lrfind: warning: <what> failed<where>:
// <CUDA's text>" on stderr.
void cudartWarn(cudaError_t rc, const std::string& what, const std::string& where = "") {
  if (rc == cudaSuccess) return;
  cudaGetLastError();
  std::fprintf(stderr, "lrfind: warning: %s failed%s: %s\n", what.c_str(), where.c_str(), cudaGetErrorString(rc));
}
#endif

// `device` is the calling thread's current device for the scope, then the previous one
// again: autograd's device thread, which starts asynchronous allreduces, is not ours to
// change. (Without CUDA in LibTorch the legacy default stream is the current device's.)
class DeviceScope {
 public:
  DeviceScope(int device, int rank) {
#if LRFIND_TORCH_HAS_CUDA
    viaTorch("setting the device", device, rank,
             [&] { guard_.emplace(static_cast<c10::DeviceIndex>(device)); });
#else
    cudartCheck(cudaGetDevice(&previous_), "cudaGetDevice", device, rank);
    if (previous_ != device) cudartCheck(cudaSetDevice(device), "cudaSetDevice", device, rank);
    changed_ = previous_ != device;
#endif
  }

  ~DeviceScope() {
#if !LRFIND_TORCH_HAS_CUDA
    if (changed_) cudartWarn(cudaSetDevice(previous_), concat("restoring the device cuda:", previous_));
#endif
  }

  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
#if LRFIND_TORCH_HAS_CUDA
  std::optional<c10::cuda::CUDAGuard> guard_;  // restores the device on destruction
#else
  int previous_ = 0;
  bool changed_ = false;
#endif
};

// A CUDA event without timing, created by its first record on the device of that stream
// (under a DeviceScope for the device). Destroying it while a record is still pending is
// fine: CUDA releases it once the record completes.
class DeviceEvent {
 public:
  DeviceEvent(int device, int rank) : device_(device), rank_(rank) {}

  ~DeviceEvent() {
#if !LRFIND_TORCH_HAS_CUDA
    if (event_ != nullptr) {
      cudartWarn(cudaEventDestroy(event_), concat("cudaEventDestroy on cuda:", device_), concat(" on rank ", rank_));
    }
#endif
  }

  DeviceEvent(const DeviceEvent&) = delete;
  DeviceEvent& operator=(const DeviceEvent&) = delete;

  // Completes once everything queued on `stream` so far has.
  void record(const Stream& stream) {
#if LRFIND_TORCH_HAS_CUDA
    viaTorch("cudaEventRecord", device_, rank_, [&] { event_.record(stream); });
#else
    if (event_ == nullptr) {
      cudartCheck(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming), "cudaEventCreateWithFlags", device_,
                  rank_);
    }
    cudartCheck(cudaEventRecord(event_, stream), "cudaEventRecord", device_, rank_);
#endif
  }

  // Work queued on `stream` from now on waits for the last record (not for later ones:
  // the event may be recorded again at once).
  void block(const Stream& stream) {
#if LRFIND_TORCH_HAS_CUDA
    viaTorch("cudaStreamWaitEvent", device_, rank_, [&] { event_.block(stream); });
#else
    if (event_ != nullptr) cudartCheck(cudaStreamWaitEvent(stream, event_, 0), "cudaStreamWaitEvent", device_, rank_);
#endif
  }

  // Whether the last record has completed (true if never recorded). Never blocks.
  bool query() const {
#if LRFIND_TORCH_HAS_CUDA
    return viaTorch("cudaEventQuery", device_, rank_, [&] { return event_.query(); });
#else
    if (event_ == nullptr) return true;
    const cudaError_t rc = cudaEventQuery(event_);
    if (rc == cudaErrorNotReady) {
      cudaGetLastError();  // not an error: clear it
      return false;
    }
    cudartCheck(rc, "cudaEventQuery", device_, rank_);
    return true;
#endif
  }

 private:
  int device_;
  int rank_;
#if LRFIND_TORCH_HAS_CUDA
  at::cuda::CUDAEvent event_;  // cudaEventDisableTiming, LibTorch's default
#else
  cudaEvent_t event_ = nullptr;
#endif
};

// Where the NCCL library in this process was loaded from, for messages.
std::string ncclLibraryPath() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&ncclGetVersion), &info) != 0 && info.dli_fname != nullptr) {
    return info.dli_fname;
  }
  return "an unknown path";
}

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
  // Starts joining and returns: waitReady() waits for it to finish.
  NcclComm(const ncclUniqueId& id, int rank, int size, const Communicator& owner)
      : rank_(rank), owner_(owner) {
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    const ncclResult_t rc = ncclCommInitRankConfig(&comm_, size, id, rank, &config);
    if (rc != ncclSuccess && rc != ncclInProgress) {
      fail(concat("ncclCommInitRankConfig failed on rank ", rank_, ": ", ncclGetErrorString(rc), lastError()));
    }
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
  void check(ncclResult_t rc, const std::string& call) {
    if (rc == ncclSuccess) return;
    if (rc == ncclInProgress) {
      waitReady(call);
      return;
    }
    fail(concat(call, " failed on rank ", rank_, ": ", ncclGetErrorString(rc), lastError()));
  }

  // Polls the communicator's state until it leaves ncclInProgress, within `policy`
  // (the owner's unless given: joining has a deadline of its own).
  void waitReady(const std::string& what, const WaitPolicy* policy = nullptr) {
    wait([&] { return asyncState(what) != ncclInProgress; }, what, policy);
  }

  // boundedWait on `done`; a timeout aborts the communicator first (its work may still be
  // queued on the device) and says so.
  void wait(const std::function<bool()>& done, const std::string& what, const WaitPolicy* policy = nullptr) {
    try {
      boundedWait(done, policy != nullptr ? *policy : owner_.waitPolicy(), owner_.label(),
                  [&] { return concat("the other ranks (", what, ")"); });
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

// The communication stream of allreduceAsync, and the event that orders it after the
// caller's stream. One event serves every call: cudaStreamWaitEvent waits for the record
// made before it, so recording the event again does not disturb an earlier wait.
class NcclStream {
 public:
  // Under a DeviceScope for `device`.
  NcclStream(int device, int rank) : device_(device), rank_(rank), stream_(create()), ready_(device, rank) {}

  ~NcclStream() {
#if !LRFIND_TORCH_HAS_CUDA
    // Work still queued on it runs to the end; CUDA releases the stream afterwards.
    cudartWarn(cudaStreamDestroy(stream_), concat("cudaStreamDestroy on cuda:", device_), concat(" on rank ", rank_));
#endif
  }

  NcclStream(const NcclStream&) = delete;
  NcclStream& operator=(const NcclStream&) = delete;

  const Stream& get() const { return stream_; }

  // Work queued here from now on runs after everything queued on `current` so far.
  void follow(const Stream& current) {
    ready_.record(current);
    ready_.block(stream_);
  }

 private:
  Stream create() const {
#if LRFIND_TORCH_HAS_CUDA
    // The pool's streams live as long as the process; high priority, so that the
    // allreduces are not starved by the backward kernels they overlap with.
    return viaTorch("getStreamFromPool", device_, rank_, [&] {
      return c10::cuda::getStreamFromPool(/*isHighPriority=*/true, static_cast<c10::DeviceIndex>(device_));
    });
#else
    // Non-blocking: no implicit synchronization with the legacy default stream, which the
    // collectives and the caller use; the events order them.
    cudaStream_t stream = nullptr;
    cudartCheck(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags", device_, rank_);
    return stream;
#endif
  }

  int device_;
  int rank_;
  Stream stream_;
  DeviceEvent ready_;
};

std::chrono::milliseconds initTimeout(const NcclOptions& options) {
  using std::chrono::milliseconds;
  if (options.init_timeout.count() > 0) return options.init_timeout;
  return std::max(milliseconds(2 * options.wait.timeout), milliseconds(std::chrono::seconds(60)));
}

std::string ncclVersionMismatch(int header_code, int library_code, const std::string& library_path) {
  if (header_code == library_code) return {};
  return concat("NCCL ", versionText(library_code), " loaded from ", library_path, " is not the NCCL ",
                versionText(header_code), " whose nccl.h lrfind was built with: two NCCL installs are mixed. "
                "Rebuild with NCCL_HOME set to the NCCL you run with, or put that NCCL's library directory first "
                "in LD_LIBRARY_PATH");
}

namespace {

// `comm`'s wait policy replaced for a scope.
class ScopedWaitPolicy {
 public:
  ScopedWaitPolicy(Communicator& comm, const WaitPolicy& policy) : comm_(comm), saved_(comm.waitPolicy()) {
    comm_.setWaitPolicy(policy);
  }
  ~ScopedWaitPolicy() { comm_.setWaitPolicy(saved_); }
  ScopedWaitPolicy(const ScopedWaitPolicy&) = delete;
  ScopedWaitPolicy& operator=(const ScopedWaitPolicy&) = delete;

 private:
  Communicator& comm_;
  WaitPolicy saved_;
};

}  // namespace

NcclCommunicator::NcclCommunicator(Communicator& bootstrap, const NcclOptions& options)
    : options_(options), uncaught_at_start_(std::uncaught_exceptions()), rank_(bootstrap.rank()),
      size_(bootstrap.size()) {
  LRFIND_CHECK(options_.wait.timeout.count() > 0, options_.wait.timeout_option, " must be positive, got ",
               options_.wait.timeout.count(), " ms");
  setWaitPolicy(options_.wait);
  setLabel(bootstrap.label());
  WaitPolicy joining = options_.wait;
  joining.timeout = initTimeout(options_);
  joining.timeout_option = options_.init_timeout.count() > 0
                               ? std::string("NcclOptions::init_timeout")
                               : concat("joining NCCL may take 2 x ", options_.wait.timeout_option, ", at least 60 s");
  // 1. Agreed: the NCCL library is the one nccl.h described, this rank's device is set,
  //    rank 0 has the id. A failure on any rank ends every rank here, with one message,
  //    before anyone waits in NCCL for a peer that will not come.
  ncclUniqueId id;
  std::memset(&id, 0, sizeof(id));
  agreeOnSuccess(bootstrap, [&] {
    int library = 0;
    const ncclResult_t rc = ncclGetVersion(&library);
    if (rc != ncclSuccess) {
      throw CommError(concat("ncclGetVersion failed on rank ", rank_, ": ", ncclGetErrorString(rc)));
    }
    const std::string mismatch = ncclVersionMismatch(NCCL_VERSION_CODE, library, ncclLibraryPath());
    if (!mismatch.empty()) throw CommError(mismatch);
    selectDevice(options_.device, rank_);
    if (rank_ != 0) return;
    const ncclResult_t id_rc = ncclGetUniqueId(&id);
    if (id_rc != ncclSuccess) throw CommError(concat("ncclGetUniqueId failed on rank 0: ", ncclGetErrorString(id_rc)));
  });
  // 2. Rank 0's id to every rank.
  at::Tensor wire = at::empty({static_cast<int64_t>(sizeof(id))}, at::kByte);
  std::memcpy(wire.data_ptr(), &id, sizeof(id));
  bootstrap.broadcast(wire);
  std::memcpy(&id, wire.data_ptr(), sizeof(id));
  try {
    // 3. Agreed: every rank has started joining (the non-blocking call returns at once).
    agreeOnSuccess(bootstrap, [&] { comm_ = std::make_unique<NcclComm>(id, rank_, size_, *this); });
    // 4. Joining (seconds on many GPUs) within its own deadline, and its outcome agreed
    //    within the same: a rank that failed early waits that long for the others.
    ScopedWaitPolicy patient(bootstrap, joining);
    agreeOnSuccess(bootstrap,
                   [&] { comm_->waitReady("joining the NCCL communicator (ncclCommInitRankConfig)", &joining); });
  } catch (...) {
    abort();  // a rank that joined does not wait for the ones that did not
    throw;
  }
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

// Its done event follows the allreduce on the communication stream.
class NcclCommunicator::AllreduceWork final : public Work {
 public:
  // Right after the allreduce was enqueued on `comm_stream`.
  AllreduceWork(NcclCommunicator& owner, const Stream& comm_stream)
      : owner_(owner), done_(owner.device(), owner.rank()) {
    done_.record(comm_stream);
  }

  AllreduceWork(const AllreduceWork&) = delete;
  AllreduceWork& operator=(const AllreduceWork&) = delete;

  bool test() override {
    if (done_.query()) return true;
    owner_.comm_->asyncState(kWhat);
    return false;
  }

  void wait() override {
    owner_.comm_->asyncState(kWhat);
    // Called from the main thread: its current stream, not the one that started it.
    DeviceScope scope(owner_.device(), owner_.rank());
    done_.block(currentStream(owner_.device()));
  }

 private:
  static constexpr const char* kWhat = "an asynchronous NCCL allreduce";

  NcclCommunicator& owner_;
  DeviceEvent done_;
};

std::unique_ptr<Work> NcclCommunicator::allreduceAsync(at::Tensor& tensor, const AllreduceOptions& opts) {
  // Every check before anything is enqueued, as allreduce() does.
  checkDeviceTensor(tensor, options_.device, "allreduceAsync");
  const ncclDataType_t type = ncclType(tensor);
  const ncclRedOp_t op = ncclOp(opts.op);
  const ncclComm_t comm = comm_->get();
  DeviceScope scope(options_.device, rank_);  // the caller may be autograd's device thread
  if (!comm_stream_) comm_stream_ = std::make_unique<NcclStream>(options_.device, rank_);
  NcclStream& side = *comm_stream_;
  side.follow(currentStream(options_.device));
#if LRFIND_TORCH_HAS_CUDA
  // The allocator hands memory back to the stream that allocated it as soon as the tensor
  // is freed; it must wait for the comm stream too (a tensor freed before wait(), or by an
  // abandoned Work).
  viaTorch("CUDACachingAllocator::recordStream", options_.device, rank_,
           [&] { c10::cuda::CUDACachingAllocator::recordStream(tensor.storage().data_ptr(), side.get()); });
#endif
  comm_->check(ncclAllReduce(tensor.data_ptr(), tensor.data_ptr(), static_cast<size_t>(tensor.numel()), type, op,
                             comm, raw(side.get())),
               "ncclAllReduce");
  return std::make_unique<AllreduceWork>(*this, side.get());
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
  // Root's own slot: a device-to-device copy on the current stream, like the receives.
  output.view({-1}).narrow(0, static_cast<int64_t>(count) * rank_, static_cast<int64_t>(count)).copy_(input.view({-1}));
  comm_->check(ncclGroupStart(), "ncclGroupStart");
  ncclResult_t failed = ncclSuccess;
  int failed_peer = -1;
  for (int r = 0; r < size_ && failed_peer < 0; ++r) {
    if (r == rank_) continue;
    const ncclResult_t rc = ncclRecv(out + bytes * r, count, type, r, comm, s);
    if (rc != ncclSuccess && rc != ncclInProgress) {
      failed = rc;
      failed_peer = r;
    }
  }
  // The group is closed before any abort: a group left open on this thread would take
  // in whatever NCCL call comes next.
  const ncclResult_t ended = ncclGroupEnd();
  if (failed_peer >= 0) comm_->check(failed, concat("ncclRecv from rank ", failed_peer, " (in a group)"));
  comm_->check(ended, "ncclGroupEnd");
}

void NcclCommunicator::barrier() {
  at::Tensor one = at::ones({1}, at::TensorOptions().dtype(at::kFloat).device(at::kCUDA, options_.device));
  allreduce(one);
  synchronize();
}

void NcclCommunicator::synchronize() {
  const char* what = "NCCL collectives";
#if LRFIND_TORCH_HAS_CUDA
  // Events after everything on the current stream and on the communication stream (an
  // asynchronous allreduce nobody waited for is still issued), polled with the NCCL
  // communicator's asynchronous error: a failed or stuck collective ends the wait.
  DeviceEvent current(options_.device, rank_), side(options_.device, rank_);
  current.record(currentStream(options_.device));
  if (comm_stream_) side.record(comm_stream_->get());
  comm_->wait(
      [&] {
        if (current.query() && side.query()) return true;
        comm_->asyncState(what);
        return false;
      },
      what);
#else
  // Without CUDA in LibTorch no CUDA tensor exists, so no collective was ever enqueued.
  comm_->asyncState(what);
#endif
}

void NcclCommunicator::abort() noexcept {
  if (comm_) comm_->abort();
}

std::string ncclRuntimeVersion() {
  int code = 0;
  if (ncclGetVersion(&code) != ncclSuccess) return "unknown";
  return versionText(code);
}

}  // namespace lrfind::comm
