#include "comm/mpi_communicator.h"

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <cstring>
#include <deque>
#include <utility>
#include <vector>

#include <ATen/ATen.h>

#include "common/error.h"
#include "comm/mpi_environment.h"
#include "comm/wait.h"

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

namespace {

// Tags of lrfind's point-to-point messages. MPI keeps messages between two ranks with
// one tag in order, so successive gathers cannot mix.
constexpr int kGatherTag = 7001;
constexpr int kAnnounceTag = 7002;  // allreduce announcements and heartbeats to rank 0
constexpr int kRingTag = 7003;      // allreduce
constexpr int kBroadcastTag = 7004;
// Up to this size a power-of-two world reduces by recursive doubling, above it by ring.
constexpr int64_t kDoublingBytes = 256 << 10;

}  // namespace

// Who rank 0 is waiting for. A gather's root knows (its receives are per rank); an
// allreduce does not tell. So every other rank announces each allreduce it enters with a
// tiny message to rank 0 (its number of allreduces so far), and repeats it as a
// heartbeat while any of its waits lasts; rank 0 reads them whenever it waits. A rank
// that never arrived has not announced the allreduce; a rank that arrived and then
// stopped (SIGSTOP, a hung node) falls silent.
struct MpiCommunicator::Impl {
  using Clock = std::chrono::steady_clock;
  static constexpr auto kHeartbeat = std::chrono::milliseconds(250);
  static constexpr auto kSilent = std::chrono::seconds(2);  // 8 heartbeats missed

  MpiComm comm;
  // Announcements travel on a communicator of their own that is never freed: rank 0
  // reads them only while it waits, so some are always left unread, and a message left
  // on a freed communicator reaches the next one that MPI gives the same context id,
  // where Open MPI then mismatched that communicator's own messages (seen: a wrong
  // allreduce and a hang). MPI_Finalize releases it.
  MPI_Comm announce_comm = MPI_COMM_NULL;
  int rank = 0;
  int64_t allreduces = 0;  // allreduce calls so far on this rank
  // Rank 0: each rank's latest announced allreduce and when it was last heard from.
  std::vector<int64_t> announced;
  std::vector<Clock::time_point> heard;
  // The others: announcements in flight (the value lives until its send completes).
  std::deque<std::pair<MPI_Request, int64_t>> announcements;
  Clock::time_point last_announced{};
  at::Tensor scratch;  // the allreduce's receive buffer, kept between calls

  void announce(int64_t value) {
    while (!announcements.empty()) {  // completed sends are dropped
      int flag = 0;
      LRFIND_MPI_CHECK(MPI_Test(&announcements.front().first, &flag, MPI_STATUS_IGNORE));
      if (flag == 0) break;
      announcements.pop_front();
    }
    announcements.emplace_back(MPI_REQUEST_NULL, value);
    auto& sent = announcements.back();
    LRFIND_MPI_CHECK(MPI_Isend(&sent.second, 1, MPI_INT64_T, 0, kAnnounceTag, announce_comm, &sent.first));
    last_announced = Clock::now();
  }

  // Announcements that are still on their way when the communicator goes: their sends
  // are completed (an 8-byte message leaves at once) or given up to MPI.
  ~Impl() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized) return;
    for (auto& [request, value] : announcements) {
      int flag = 0;
      if (request != MPI_REQUEST_NULL && MPI_Test(&request, &flag, MPI_STATUS_IGNORE) == MPI_SUCCESS && !flag) {
        MPI_Request_free(&request);
      }
    }
  }

  // Rank 0: reads every announcement that has arrived.
  void readAnnouncements(int size) {
    announced.resize(static_cast<std::size_t>(size), 0);
    heard.resize(static_cast<std::size_t>(size), Clock::now());
    for (;;) {
      int flag = 0;
      MPI_Status status;
      LRFIND_MPI_CHECK(MPI_Iprobe(MPI_ANY_SOURCE, kAnnounceTag, announce_comm, &flag, &status));
      if (flag == 0) return;
      int64_t number = 0;
      LRFIND_MPI_CHECK(
          MPI_Recv(&number, 1, MPI_INT64_T, status.MPI_SOURCE, kAnnounceTag, announce_comm, MPI_STATUS_IGNORE));
      const auto r = static_cast<std::size_t>(status.MPI_SOURCE);
      announced[r] = std::max(announced[r], number);
      heard[r] = Clock::now();
    }
  }

  // Rank 0, in an allreduce: the ranks that fell silent, else those that have not
  // announced it. Silence comes first: a rank stopped halfway through the previous
  // allreduce leaves its partners there too, late for this one but still heartbeating,
  // and naming them would send the user to the wrong node.
  std::vector<int> missing(int64_t number) const {
    std::vector<int> late, silent;
    const auto now = Clock::now();
    for (std::size_t r = 1; r < announced.size(); ++r) {
      if (announced[r] < number) late.push_back(static_cast<int>(r));
      if (now - heard[r] > kSilent) silent.push_back(static_cast<int>(r));
    }
    return silent.empty() ? late : silent;
  }

  // A root's one request per rank (MPI_REQUEST_NULL for itself), finished; the ranks
  // whose request is still out are the ones a warning or a timeout names.
  void finishPerRank(const Communicator& owner, std::vector<MPI_Request>& requests, const char* what) {
    finish(owner, requests.data(), static_cast<int>(requests.size()), [&] {
      std::vector<int> missing;
      for (std::size_t r = 0; r < requests.size(); ++r) {
        if (requests[r] != MPI_REQUEST_NULL) missing.push_back(static_cast<int>(r));
      }
      return concat(describeRanks(missing, owner.peerNames()), what);
    });
  }

  // Completes `requests` within `owner`'s wait policy, reading (rank 0) or sending (the
  // others) announcements meanwhile. MPI_Test frees each request as it completes
  // (MPI_REQUEST_NULL), so `waiting_for` can tell which are still out.
  void finish(const Communicator& owner, MPI_Request* requests, int count,
              const std::function<std::string()>& waiting_for) {
    boundedWait(
        [&] {
          if (rank == 0) {
            readAnnouncements(owner.size());
          } else if (Clock::now() - last_announced > kHeartbeat) {
            announce(allreduces);
          }
          bool all = true;
          for (int i = 0; i < count; ++i) {
            if (requests[i] == MPI_REQUEST_NULL) continue;
            int flag = 0;
            LRFIND_MPI_CHECK(MPI_Test(&requests[i], &flag, MPI_STATUS_IGNORE));
            all = all && flag != 0;
          }
          return all;
        },
        owner.waitPolicy(), owner.label(), waiting_for);
  }
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

// target = target op incoming, elementwise, in place.
void reduceInto(at::Tensor& target, const at::Tensor& incoming, ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: target.add_(incoming); return;
    case ReduceOp::kMin: at::minimum_out(target, target, incoming); return;
    case ReduceOp::kMax: at::maximum_out(target, target, incoming); return;
  }
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
  impl_->rank = rank_;
  LRFIND_MPI_CHECK(MPI_Comm_dup(comm, &impl_->announce_comm));
  const MpiComm node = MpiComm::splitShared(comm, rank_);
  LRFIND_MPI_CHECK(MPI_Comm_rank(node.get(), &local_rank_));
  LRFIND_MPI_CHECK(MPI_Comm_size(node.get(), &local_size_));
}

MpiCommunicator::~MpiCommunicator() = default;

void MpiCommunicator::allreduce(at::Tensor& tensor, const AllreduceOptions& opts) {
  const int n = count(tensor);
  const MPI_Datatype type = mpiType(tensor);
  const MPI_Op op = mpiOp(opts.op);
  if (waitPolicy().blocking) {
    LRFIND_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, tensor.data_ptr(), n, type, op, impl_->comm.get()));
    return;
  }
  Impl& impl = *impl_;
  const int64_t number = ++impl.allreduces;
  if (rank_ != 0) impl.announce(number);
  const auto missing = [&] {
    const std::vector<int> ranks = rank_ == 0 ? impl.missing(number) : std::vector<int>();
    // Everyone arrived and nobody fell silent, and yet it does not finish: say so.
    return ranks.empty() ? std::string("the other ranks (allreduce)")
                         : concat(describeRanks(ranks, peerNames()), " (allreduce)");
  };
  // Point-to-point algorithms finished by bounded waits. Open MPI's MPI_Iallreduce
  // (libnbc) measured 1.25x slower than the blocking MPI_Allreduce on a 7.45 MB gradient
  // at np 2 (tests/bench/bounded_wait.cpp); these are as fast as the blocking call.
  // Every rank ends with the same bits: each sum is formed once and sent (ring), or
  // formed from the same two operands on both sides of a commutative op (doubling).
  const int64_t numel = tensor.numel();
  at::Tensor flat = tensor.view({-1});
  const bool doubling = (size_ & (size_ - 1)) == 0 && numel * tensor.element_size() <= kDoublingBytes;
  const int64_t scratch_numel = doubling ? numel : (numel + size_ - 1) / size_;
  if (!impl.scratch.defined() || impl.scratch.scalar_type() != tensor.scalar_type() ||
      impl.scratch.numel() < scratch_numel) {
    impl.scratch = at::empty({scratch_numel}, tensor.options());
  }
  // One step: send `out` to `to`, receive into `in` from `from`.
  const auto exchange = [&](const at::Tensor& out, int to, const at::Tensor& in, int from) {
    MPI_Request requests[2] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL};
    LRFIND_MPI_CHECK(MPI_Irecv(in.data_ptr(), static_cast<int>(in.numel()), type, from, kRingTag, impl.comm.get(),
                               &requests[0]));
    LRFIND_MPI_CHECK(MPI_Isend(out.data_ptr(), static_cast<int>(out.numel()), type, to, kRingTag, impl.comm.get(),
                               &requests[1]));
    impl.finish(*this, requests, 2, missing);
  };
  if (doubling) {
    // Small tensors, a power-of-two world: log2(W) steps of whole-tensor exchanges with
    // the partner rank ^ 2^k (latency, not bandwidth, is what counts here).
    at::Tensor incoming = impl.scratch.narrow(0, 0, numel);
    for (int mask = 1; mask < size_; mask <<= 1) {
      const int partner = rank_ ^ mask;
      exchange(flat, partner, incoming, partner);
      at::Tensor target = flat;
      reduceInto(target, incoming, opts.op);
    }
    return;
  }
  // A ring (reduce-scatter, then allgather: 2(W-1) steps, each moving 1/W of the tensor
  // to the right-hand neighbour): bandwidth-optimal for large gradients.
  const auto piece = [&](int i) {
    const int64_t begin = numel * i / size_, end = numel * (i + 1) / size_;
    return flat.narrow(0, begin, end - begin);
  };
  const int right = (rank_ + 1) % size_, left = (rank_ + size_ - 1) % size_;
  const auto mod = [&](int i) { return ((i % size_) + size_) % size_; };
  for (int step = 0; step + 1 < size_; ++step) {
    at::Tensor mine = piece(mod(rank_ - step - 1));
    at::Tensor incoming = impl.scratch.narrow(0, 0, mine.numel());
    exchange(piece(mod(rank_ - step)), right, incoming, left);
    reduceInto(mine, incoming, opts.op);
  }
  for (int step = 0; step + 1 < size_; ++step) {
    exchange(piece(mod(rank_ + 1 - step)), right, piece(mod(rank_ - step)), left);
  }
}

void MpiCommunicator::broadcast(at::Tensor& tensor, const BroadcastOptions& opts) {
  const int n = count(tensor);
  LRFIND_CHECK(opts.root >= 0 && opts.root < size_, "broadcast root ", opts.root, " outside a world of ", size_);
  if (waitPolicy().blocking) {
    LRFIND_MPI_CHECK(MPI_Bcast(tensor.data_ptr(), n, mpiType(tensor), opts.root, impl_->comm.get()));
    return;
  }
  // Point-to-point from the root: the control messages are tiny, and the one large
  // broadcast (the parameters, once) is not worth a tree.
  const MPI_Comm comm = impl_->comm.get();
  if (rank_ != opts.root) {
    MPI_Request request = MPI_REQUEST_NULL;
    LRFIND_MPI_CHECK(MPI_Irecv(tensor.data_ptr(), n, mpiType(tensor), opts.root, kBroadcastTag, comm, &request));
    impl_->finish(*this, &request, 1, [&] { return concat(describeRank(opts.root), ", the broadcast's root,"); });
    return;
  }
  std::vector<MPI_Request> requests(static_cast<std::size_t>(size_), MPI_REQUEST_NULL);
  for (int r = 0; r < size_; ++r) {
    if (r == rank_) continue;
    LRFIND_MPI_CHECK(MPI_Isend(tensor.data_ptr(), n, mpiType(tensor), r, kBroadcastTag, comm,
                               &requests[static_cast<std::size_t>(r)]));
  }
  impl_->finishPerRank(*this, requests, " (broadcast)");
}

// Point-to-point rather than MPI_Igather: the root learns which ranks have not sent,
// so a stall warning or a timeout can name them.
void MpiCommunicator::gather(const at::Tensor& input, at::Tensor& output, const GatherOptions& opts) {
  const int n = count(input);
  LRFIND_CHECK(opts.root >= 0 && opts.root < size_, "gather root ", opts.root, " outside a world of ", size_);
  const MPI_Datatype type = mpiType(input);
  const MPI_Comm comm = impl_->comm.get();
  if (rank_ != opts.root) {
    if (waitPolicy().blocking) {
      LRFIND_MPI_CHECK(MPI_Gather(input.data_ptr(), n, type, nullptr, n, type, opts.root, comm));
      return;
    }
    MPI_Request request = MPI_REQUEST_NULL;
    LRFIND_MPI_CHECK(MPI_Isend(input.data_ptr(), n, type, opts.root, kGatherTag, comm, &request));
    impl_->finish(*this, &request, 1, [&] { return concat(describeRank(opts.root), ", the gather's root,"); });
    return;
  }
  LRFIND_CHECK(output.defined() && output.is_contiguous() && output.numel() == static_cast<int64_t>(n) * size_ &&
                   output.scalar_type() == input.scalar_type(),
               "gather output must hold ", static_cast<int64_t>(n) * size_, " elements of ", input.scalar_type());
  if (waitPolicy().blocking) {
    LRFIND_MPI_CHECK(MPI_Gather(input.data_ptr(), n, type, output.data_ptr(), n, type, opts.root, comm));
    return;
  }
  auto* out = static_cast<char*>(output.data_ptr());
  const auto bytes = static_cast<std::size_t>(n) * input.element_size();
  std::memcpy(out + bytes * static_cast<std::size_t>(rank_), input.data_ptr(), bytes);
  std::vector<MPI_Request> requests(static_cast<std::size_t>(size_), MPI_REQUEST_NULL);
  for (int r = 0; r < size_; ++r) {
    if (r == rank_) continue;
    LRFIND_MPI_CHECK(MPI_Irecv(out + bytes * static_cast<std::size_t>(r), n, type, r, kGatherTag, comm,
                               &requests[static_cast<std::size_t>(r)]));
  }
  impl_->finishPerRank(*this, requests, "");
}

void MpiCommunicator::barrier() {
  if (waitPolicy().blocking) {
    LRFIND_MPI_CHECK(MPI_Barrier(impl_->comm.get()));
    return;
  }
  MPI_Request request = MPI_REQUEST_NULL;
  LRFIND_MPI_CHECK(MPI_Ibarrier(impl_->comm.get(), &request));
  impl_->finish(*this, &request, 1, [] { return std::string("the other ranks (barrier)"); });
}

}  // namespace lrfind::comm
