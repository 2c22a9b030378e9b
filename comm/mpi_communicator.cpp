#include "comm/mpi_communicator.h"

#include <mpi.h>

#include <cstdio>

#include <ATen/ATen.h>

#include "common/error.h"
#include "comm/mpi_environment.h"

namespace lrfind::comm {
namespace {

std::string mpiErrorText(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
  return std::string(text, static_cast<std::size_t>(len));
}

int worldRank() {
  int initialized = 0, finalized = 0, rank = -1;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

}  // namespace

// Throws CommError("<call> failed on rank R: <MPI's error string>").
#define LRFIND_MPI_CHECK(call)                                                                \
  do {                                                                                        \
    const int lrfind_mpi_rc = (call);                                                         \
    if (lrfind_mpi_rc != MPI_SUCCESS) {                                                       \
      throw ::lrfind::CommError(::lrfind::concat(#call, " failed on rank ", worldRank(), ": ", \
                                                 mpiErrorText(lrfind_mpi_rc)));               \
    }                                                                                         \
  } while (0)

MpiEnvironment::MpiEnvironment() {
  int initialized = 0;
  LRFIND_MPI_CHECK(MPI_Initialized(&initialized));
  if (initialized) return;
  int provided = 0;
  LRFIND_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided));
  owns_ = true;
  // Errors on MPI_COMM_WORLD come back as codes too (its handler defaults to abort).
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
}

MpiEnvironment::~MpiEnvironment() {
  if (!owns_) return;
  const int rc = MPI_Finalize();
  if (rc != MPI_SUCCESS) std::fprintf(stderr, "lrfind: MPI_Finalize failed: %s\n", mpiErrorText(rc).c_str());
}

const char* MpiEnvironment::libraryVersion() {
  static char text[MPI_MAX_LIBRARY_VERSION_STRING] = {0};
  if (text[0] == '\0') {
    int len = 0;
    MPI_Get_library_version(text, &len);
    for (int i = 0; i < len; ++i) {
      if (text[i] == ',' || text[i] == '\n') {  // the first clause: "Open MPI v4.1.4"
        text[i] = '\0';
        break;
      }
    }
  }
  return text;
}

namespace {

// Owns one communicator that lrfind created (MPI_Comm_dup, MPI_Comm_split_type) and
// frees it on destruction, also when a constructor throws halfway. Move-only. The
// destructor never throws: a failed MPI_Comm_free is logged. After MPI_Finalize a
// communicator can no longer be freed, so it is left alone (MPI has released it).
class MpiComm {
 public:
  MpiComm() = default;
  ~MpiComm() { reset(); }
  MpiComm(MpiComm&& other) noexcept : comm_(other.comm_) { other.comm_ = MPI_COMM_NULL; }
  MpiComm& operator=(MpiComm&& other) noexcept {
    if (this != &other) {
      reset();
      comm_ = other.comm_;
      other.comm_ = MPI_COMM_NULL;
    }
    return *this;
  }
  MpiComm(const MpiComm&) = delete;
  MpiComm& operator=(const MpiComm&) = delete;

  // MPI_Comm_dup of `parent`, with MPI_ERRORS_RETURN: failed calls return a code.
  static MpiComm dup(MPI_Comm parent) {
    MPI_Comm made = MPI_COMM_NULL;
    LRFIND_MPI_CHECK(MPI_Comm_dup(parent, &made));
    MpiComm owned(made);
    LRFIND_MPI_CHECK(MPI_Comm_set_errhandler(made, MPI_ERRORS_RETURN));
    return owned;
  }

  // The processes of `parent` that share this node's memory, ordered by `key`.
  static MpiComm splitShared(MPI_Comm parent, int key) {
    MPI_Comm made = MPI_COMM_NULL;
    LRFIND_MPI_CHECK(MPI_Comm_split_type(parent, MPI_COMM_TYPE_SHARED, key, MPI_INFO_NULL, &made));
    return MpiComm(made);
  }

  MPI_Comm get() const { return comm_; }

 private:
  explicit MpiComm(MPI_Comm comm) : comm_(comm) {}

  void reset() noexcept {
    if (comm_ == MPI_COMM_NULL) return;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) {
      const int rc = MPI_Comm_free(&comm_);
      if (rc != MPI_SUCCESS) {
        std::fprintf(stderr, "lrfind: warning: MPI_Comm_free failed on rank %d: %s\n", worldRank(),
                     mpiErrorText(rc).c_str());
      }
    }
    comm_ = MPI_COMM_NULL;
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
};

}  // namespace

struct MpiCommunicator::Impl {
  MpiComm comm;
};

namespace {

MPI_Datatype mpiType(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return MPI_FLOAT;
    case at::kDouble: return MPI_DOUBLE;
    case at::kLong: return MPI_INT64_T;
    case at::kInt: return MPI_INT32_T;
    case at::kByte: return MPI_UINT8_T;
    default: break;
  }
  throw CommError(concat("the MPI backend does not take tensors of dtype ", t.scalar_type(),
                         " (float32/64, int32/64 and uint8 only)"));
}

MPI_Op mpiOp(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return MPI_SUM;
    case ReduceOp::kMin: return MPI_MIN;
    case ReduceOp::kMax: return MPI_MAX;
  }
  // Any int converts to ReduceOp: a value outside the enum must not reduce as a sum.
  throw CommError(concat("the MPI backend has no reduce op ", static_cast<int>(op)));
}

int count(const at::Tensor& t) {
  LRFIND_CHECK(t.defined() && t.is_contiguous(), "MPI collectives need defined, contiguous tensors");
  LRFIND_CHECK(t.device().is_cpu(), "the MPI backend takes CPU tensors, got one on ", t.device());
  LRFIND_CHECK(t.numel() <= INT32_MAX, "tensor of ", t.numel(), " elements is too large for one MPI call");
  return static_cast<int>(t.numel());
}

}  // namespace

MpiCommunicator::MpiCommunicator(void* parent) : impl_(std::make_unique<Impl>()) {
  // Both communicators are owned from the moment they exist: a throw below frees them.
  impl_->comm = MpiComm::dup(parent != nullptr ? *static_cast<MPI_Comm*>(parent) : MPI_COMM_WORLD);
  const MPI_Comm comm = impl_->comm.get();
  LRFIND_MPI_CHECK(MPI_Comm_rank(comm, &rank_));
  LRFIND_MPI_CHECK(MPI_Comm_size(comm, &size_));
  const MpiComm node = MpiComm::splitShared(comm, rank_);
  LRFIND_MPI_CHECK(MPI_Comm_rank(node.get(), &local_rank_));
  LRFIND_MPI_CHECK(MPI_Comm_size(node.get(), &local_size_));
}

MpiCommunicator::~MpiCommunicator() = default;

void MpiCommunicator::allreduce(at::Tensor& tensor, const AllreduceOptions& opts) {
  const int n = count(tensor);
  const MPI_Datatype type = mpiType(tensor);
  const MPI_Op op = mpiOp(opts.op);
  LRFIND_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, tensor.data_ptr(), n, type, op, impl_->comm.get()));
}

void MpiCommunicator::broadcast(at::Tensor& tensor, const BroadcastOptions& opts) {
  const int n = count(tensor);
  LRFIND_CHECK(opts.root >= 0 && opts.root < size_, "broadcast root ", opts.root, " outside a world of ", size_);
  LRFIND_MPI_CHECK(MPI_Bcast(tensor.data_ptr(), n, mpiType(tensor), opts.root, impl_->comm.get()));
}

void MpiCommunicator::gather(const at::Tensor& input, at::Tensor& output, const GatherOptions& opts) {
  const int n = count(input);
  LRFIND_CHECK(opts.root >= 0 && opts.root < size_, "gather root ", opts.root, " outside a world of ", size_);
  void* recv = nullptr;
  if (rank_ == opts.root) {
    LRFIND_CHECK(output.defined() && output.is_contiguous() && output.numel() == static_cast<int64_t>(n) * size_ &&
                     output.scalar_type() == input.scalar_type(),
                 "gather output must hold ", static_cast<int64_t>(n) * size_, " elements of ", input.scalar_type());
    recv = output.data_ptr();
  }
  const MPI_Datatype type = mpiType(input);
  LRFIND_MPI_CHECK(MPI_Gather(input.data_ptr(), n, type, recv, n, type, opts.root, impl_->comm.get()));
}

void MpiCommunicator::barrier() { LRFIND_MPI_CHECK(MPI_Barrier(impl_->comm.get())); }

}  // namespace lrfind::comm
