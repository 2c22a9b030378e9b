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
#include "comm/shm_allreduce.h"
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
constexpr int kBroadcastTag = 7004;
// Allreduce number n uses tag kAllreduceTagBase + n % kAllreduceTags: the steps of
// allreduces under way at once never match each other's messages.
constexpr int kAllreduceTagBase = 10000;
constexpr int kAllreduceTags = 8192;  // MPI guarantees tags up to 32767
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
  // Allreduce receive buffers, kept between calls; those of allreduces abandoned
  // unfinished stay alive here, since MPI may still write into them.
  std::vector<at::Tensor> spare_scratch;
  std::vector<at::Tensor> abandoned;
  // The shared-memory buffers' progress (comm/shm_allreduce.h), run in every poll.
  std::vector<std::pair<const void*, std::function<void()>>> pollers;

  at::Tensor takeScratch(int64_t numel, const at::TensorOptions& options) {
    for (auto it = spare_scratch.begin(); it != spare_scratch.end(); ++it) {
      if (it->numel() >= numel && it->scalar_type() == options.dtype()) {
        at::Tensor found = std::move(*it);
        spare_scratch.erase(it);
        return found;
      }
    }
    return at::empty({std::max<int64_t>(numel, 1)}, options);
  }

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

  // Rank 0: whether rank r has not been heard from for kSilent (false where this rank
  // hears no heartbeats: not rank 0, or r never counted).
  bool silent(std::size_t r, Clock::time_point now) const {
    return rank == 0 && r < heard.size() && now - heard[r] > kSilent;
  }

  // Rank 0, in an allreduce: the ranks that fell silent, else those that have not
  // announced it. Silence comes first: a rank stopped halfway through the previous
  // allreduce leaves its partners there too, late for this one but still heartbeating,
  // and naming them would send the user to the wrong node.
  std::vector<int> missing(int64_t number) const {
    std::vector<int> late, quiet;
    const auto now = Clock::now();
    for (std::size_t r = 1; r < announced.size(); ++r) {
      if (announced[r] < number) late.push_back(static_cast<int>(r));
      if (silent(r, now)) quiet.push_back(static_cast<int>(r));
    }
    return quiet.empty() ? late : quiet;
  }

  // A root's one request per rank (MPI_REQUEST_NULL for itself), finished; the ranks
  // whose request is still out are the ones a warning or a timeout names, and of those
  // the silent ones if any, for the reason given at missing().
  void finishPerRank(const Communicator& owner, std::vector<MPI_Request>& requests, const char* what) {
    finish(owner, requests.data(), static_cast<int>(requests.size()), [&] {
      std::vector<int> out, quiet;
      const auto now = Clock::now();
      for (std::size_t r = 0; r < requests.size(); ++r) {
        if (requests[r] == MPI_REQUEST_NULL) continue;
        out.push_back(static_cast<int>(r));
        if (silent(r, now)) quiet.push_back(static_cast<int>(r));
      }
      return concat(describeRanks(quiet.empty() ? out : quiet, owner.peerNames()), what);
    });
  }

  // What every poll does besides its own test: a shared-memory buffer sums its pieces,
  // rank 0 reads announcements, the others send a heartbeat when one is due.
  void tick(const Communicator& owner) {
    for (const auto& poller : pollers) poller.second();
    if (rank == 0) {
      readAnnouncements(owner.size());
    } else if (Clock::now() - last_announced > kHeartbeat) {
      announce(allreduces);
    }
  }

  // Polls `done` (and tick) until it returns true, within `owner`'s wait policy.
  void progress(const Communicator& owner, const std::function<bool()>& done,
                const std::function<std::string()>& waiting_for) {
    boundedWait(
        [&] {
          tick(owner);
          return done();
        },
        owner.waitPolicy(), owner.label(), waiting_for);
  }

  // Completes `requests` within `owner`'s wait policy. MPI_Test frees each request as it
  // completes (MPI_REQUEST_NULL), so `waiting_for` can tell which are still out.
  void finish(const Communicator& owner, MPI_Request* requests, int count,
              const std::function<std::string()>& waiting_for) {
    progress(
        owner,
        [&] {
          bool all = true;
          for (int i = 0; i < count; ++i) {
            if (requests[i] == MPI_REQUEST_NULL) continue;
            int flag = 0;
            LRFIND_MPI_CHECK(MPI_Test(&requests[i], &flag, MPI_STATUS_IGNORE));
            all = all && flag != 0;
          }
          return all;
        },
        waiting_for);
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

// One allreduce as a list of point-to-point steps, each a send to one rank and a receive
// from one (the same or another), optionally followed by a reduction of what arrived.
// Steps run in order; test() posts a step, checks it, and moves on while it can.
// Every rank ends with the same bits: each sum is formed once and sent (ring), or
// formed from the same two operands on both sides of a commutative op (doubling).
class MpiCommunicator::AllreduceWork final : public Work {
 public:
  AllreduceWork(MpiCommunicator& owner, const at::Tensor& tensor, const AllreduceOptions& opts)
      : owner_(owner), impl_(*owner.impl_), tensor_(tensor), type_(mpiType(tensor)), op_(opts.op) {
    count(tensor);  // the checks
    mpiOp(op_);     // a ReduceOp outside the enum fails before anything is sent
    number_ = ++impl_.allreduces;
    tag_ = kAllreduceTagBase + static_cast<int>(number_ % kAllreduceTags);
    if (owner.rank() != 0) impl_.announce(number_);
    plan();
  }

  ~AllreduceWork() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (next_ >= steps_.size() || finalized) {
      if (scratch_.defined()) impl_.spare_scratch.push_back(std::move(scratch_));
      return;
    }
    // Abandoned unfinished (a timeout or an error elsewhere): MPI may still write into
    // the buffers, which therefore outlive this object.
    for (auto& request : requests_) {
      if (request != MPI_REQUEST_NULL) MPI_Request_free(&request);
    }
    impl_.abandoned.push_back(std::move(tensor_));
    if (scratch_.defined()) impl_.abandoned.push_back(std::move(scratch_));
  }

  AllreduceWork(const AllreduceWork&) = delete;
  AllreduceWork& operator=(const AllreduceWork&) = delete;

  bool test() override {
    impl_.tick(owner_);
    return advance();
  }

  void wait() override {
    impl_.progress(owner_, [&] { return advance(); },
                   [&] {
                     const std::vector<int> ranks =
                         owner_.rank() == 0 ? impl_.missing(number_) : std::vector<int>();
                     // Everyone arrived and nobody fell silent, and yet it does not finish.
                     return ranks.empty() ? std::string("the other ranks (allreduce)")
                                          : concat(describeRanks(ranks, owner_.peerNames()), " (allreduce)");
                   });
  }

 private:
  struct Step {
    at::Tensor send;
    int to = 0;
    at::Tensor receive;
    int from = 0;
    at::Tensor reduce_into;  // undefined: the receive is the result
  };

  // The steps: recursive doubling for small tensors in a power-of-two world (latency,
  // not bandwidth, counts there: log2(W) whole-tensor exchanges with rank ^ 2^k), else
  // a ring (reduce-scatter, then allgather: 2(W-1) steps, each moving 1/W of the tensor
  // to the right-hand neighbour), bandwidth-optimal for large gradients.
  void plan() {
    const int rank = owner_.rank(), size = owner_.size();
    if (size == 1) return;
    const int64_t numel = tensor_.numel();
    at::Tensor flat = tensor_.view({-1});
    const bool doubling = (size & (size - 1)) == 0 && numel * tensor_.element_size() <= kDoublingBytes;
    scratch_ = impl_.takeScratch(doubling ? numel : (numel + size - 1) / size, tensor_.options());
    if (doubling) {
      at::Tensor incoming = scratch_.narrow(0, 0, numel);
      for (int mask = 1; mask < size; mask <<= 1) {
        steps_.push_back({flat, rank ^ mask, incoming, rank ^ mask, flat});
      }
      return;
    }
    const auto piece = [&](int i) {
      const int64_t begin = numel * i / size, end = numel * (i + 1) / size;
      return flat.narrow(0, begin, end - begin);
    };
    const int right = (rank + 1) % size, left = (rank + size - 1) % size;
    const auto mod = [&](int i) { return ((i % size) + size) % size; };
    for (int step = 0; step + 1 < size; ++step) {
      at::Tensor mine = piece(mod(rank - step - 1));
      steps_.push_back({piece(mod(rank - step)), right, scratch_.narrow(0, 0, mine.numel()), left, mine});
    }
    for (int step = 0; step + 1 < size; ++step) {
      steps_.push_back({piece(mod(rank + 1 - step)), right, piece(mod(rank - step)), left, at::Tensor()});
    }
  }

  // Posts and completes steps until one is still in flight; true when all are done.
  bool advance() {
    const MPI_Comm comm = impl_.comm.get();
    while (next_ < steps_.size()) {
      Step& step = steps_[next_];
      if (!posted_) {
        LRFIND_MPI_CHECK(MPI_Irecv(step.receive.data_ptr(), static_cast<int>(step.receive.numel()), type_, step.from,
                                   tag_, comm, &requests_[0]));
        LRFIND_MPI_CHECK(MPI_Isend(step.send.data_ptr(), static_cast<int>(step.send.numel()), type_, step.to, tag_,
                                   comm, &requests_[1]));
        posted_ = true;
      }
      int done = 0;
      LRFIND_MPI_CHECK(MPI_Testall(2, requests_, &done, MPI_STATUSES_IGNORE));
      if (done == 0) return false;
      posted_ = false;
      if (step.reduce_into.defined()) reduceInto(step.reduce_into, step.receive, op_);
      ++next_;
    }
    return true;
  }

  MpiCommunicator& owner_;
  Impl& impl_;
  at::Tensor tensor_;
  at::Tensor scratch_;
  MPI_Datatype type_;
  ReduceOp op_;
  int64_t number_ = 0;
  int tag_ = kAllreduceTagBase;
  std::vector<Step> steps_;
  std::size_t next_ = 0;
  bool posted_ = false;
  MPI_Request requests_[2] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL};
};

std::unique_ptr<Work> MpiCommunicator::allreduceAsync(at::Tensor& tensor, const AllreduceOptions& opts) {
  if (waitPolicy().blocking) return Communicator::allreduceAsync(tensor, opts);
  return std::make_unique<AllreduceWork>(*this, tensor, opts);
}

// Point-to-point algorithms finished by bounded waits. Open MPI's MPI_Iallreduce (libnbc)
// measured 1.25x slower than the blocking MPI_Allreduce on a 7.45 MB gradient at np 2
// (tests/bench/bounded_wait.cpp); these are as fast as the blocking call.
void MpiCommunicator::allreduce(at::Tensor& tensor, const AllreduceOptions& opts) {
  if (waitPolicy().blocking) {
    LRFIND_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, tensor.data_ptr(), count(tensor), mpiType(tensor), mpiOp(opts.op),
                                   impl_->comm.get()));
    return;
  }
  allreduceAsync(tensor, opts)->wait();
}

std::unique_ptr<SharedBuffer> MpiCommunicator::sharedBuffer(int64_t numel, c10::ScalarType dtype, std::string* why) {
  std::string reason;
  if (size_ == 1) {
    reason = "a world of one has nothing to share";
  } else if (local_size_ != size_) {
    reason = concat("the ranks are on more than one node (", local_size_, " of ", size_, " on this one)");
  } else if (waitPolicy().blocking) {
    reason = "the blocking MPI calls were asked for";
  }
  if (!reason.empty()) {  // the same on every rank
    if (why != nullptr) *why = reason;
    return nullptr;
  }
  ShmHooks hooks;
  hooks.tick = [this] { impl_->tick(*this); };
  hooks.set_poller = [this](const void* buffer, std::function<void()> poll) {
    auto& pollers = impl_->pollers;
    pollers.erase(std::remove_if(pollers.begin(), pollers.end(), [&](const auto& p) { return p.first == buffer; }),
                  pollers.end());
    if (poll) pollers.emplace_back(buffer, std::move(poll));
  };
  return makeShmBuffer(*this, numel, dtype, std::move(hooks), why);
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

std::unique_ptr<MpiCommunicator> MpiCommunicator::split(int color, int key) {
  LRFIND_CHECK(color >= 0, "MpiCommunicator::split: color must be >= 0, got ", color);
  barrier();  // every rank is here: the blocking calls below cannot wait for a missing one
  MPI_Comm part = MPI_COMM_NULL;
  LRFIND_MPI_CHECK(MPI_Comm_split(impl_->comm.get(), color, key, &part));
  std::unique_ptr<MpiCommunicator> group;
  try {
    group = std::make_unique<MpiCommunicator>(&part);  // its own duplicate of `part`
  } catch (...) {
    MPI_Comm_free(&part);
    throw;
  }
  LRFIND_MPI_CHECK(MPI_Comm_free(&part));
  // Each rank of the group is which rank here: for the names in its messages.
  MPI_Group mine = MPI_GROUP_NULL, theirs = MPI_GROUP_NULL;
  LRFIND_MPI_CHECK(MPI_Comm_group(impl_->comm.get(), &mine));
  LRFIND_MPI_CHECK(MPI_Comm_group(group->impl_->comm.get(), &theirs));
  std::vector<int> ranks(static_cast<std::size_t>(group->size())), here(ranks.size());
  for (int i = 0; i < group->size(); ++i) ranks[static_cast<std::size_t>(i)] = i;
  const int rc = MPI_Group_translate_ranks(theirs, group->size(), ranks.data(), mine, here.data());
  MPI_Group_free(&mine);
  MPI_Group_free(&theirs);
  LRFIND_MPI_CHECK(rc);
  std::vector<std::string> names;
  for (const int r : here) {
    names.push_back(static_cast<std::size_t>(r) < peerNames().size() ? peerNames()[static_cast<std::size_t>(r)]
                                                                      : std::string());
  }
  group->setPeerNames(std::move(names));
  group->setWaitPolicy(waitPolicy());
  group->setLabel(label());
  return group;
}

}  // namespace lrfind::comm

namespace lrfind::comm {
namespace {

constexpr int kMailboxTag = 7101;

class MpiMailbox final : public Mailbox {
 public:
  MpiMailbox(MPI_Comm comm, int rank, int size, std::vector<std::string> names)
      : comm_(comm), rank_(rank), size_(size), names_(std::move(names)) {}

  // Sends still under way when the mailbox goes are given up to MPI, and their buffers
  // left alive: MPI may still read them.
  ~MpiMailbox() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized) return;
    for (auto& s : sends_) {
      int flag = 0;
      if (s.request != MPI_REQUEST_NULL && MPI_Test(&s.request, &flag, MPI_STATUS_IGNORE) == MPI_SUCCESS && !flag) {
        MPI_Request_free(&s.request);
        static_cast<void>(s.bytes.release());  // leaked on purpose: MPI may still read it
      }
    }
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void send(int dest, std::string bytes) override {
    LRFIND_CHECK(dest >= 0 && dest < size_ && dest != rank_, "Mailbox::send: bad destination rank ", dest);
    dropCompleted();
    sends_.push_back(Send{std::make_unique<std::string>(std::move(bytes)), dest, MPI_REQUEST_NULL});
    Send& s = sends_.back();
    LRFIND_MPI_CHECK(MPI_Isend(s.bytes->data(), static_cast<int>(s.bytes->size()), MPI_BYTE, dest, kMailboxTag,
                               comm_, &s.request));
  }

  std::optional<Message> receive() override {
    dropCompleted();
    int flag = 0;
    MPI_Status status;
    LRFIND_MPI_CHECK(MPI_Iprobe(MPI_ANY_SOURCE, kMailboxTag, comm_, &flag, &status));
    if (flag == 0) return std::nullopt;
    int count = 0;
    LRFIND_MPI_CHECK(MPI_Get_count(&status, MPI_BYTE, &count));
    Message m;
    m.source = status.MPI_SOURCE;
    m.bytes.resize(static_cast<std::size_t>(count));
    LRFIND_MPI_CHECK(
        MPI_Recv(m.bytes.data(), count, MPI_BYTE, m.source, kMailboxTag, comm_, MPI_STATUS_IGNORE));
    return m;
  }

  void flush(const WaitPolicy& policy, const std::string& label) override {
    boundedWait(
        [&] {
          dropCompleted();
          return sends_.empty();
        },
        policy, label,
        [&] {
          std::vector<int> ranks;
          for (const auto& s : sends_) {
            if (std::find(ranks.begin(), ranks.end(), s.dest) == ranks.end()) ranks.push_back(s.dest);
          }
          return concat(describeRanks(ranks, names_), " to take this rank's messages");
        });
  }

 private:
  struct Send {
    std::unique_ptr<std::string> bytes;  // stable while the deque moves
    int dest;
    MPI_Request request;
  };

  void dropCompleted() {
    for (auto it = sends_.begin(); it != sends_.end();) {
      int flag = 0;
      LRFIND_MPI_CHECK(MPI_Test(&it->request, &flag, MPI_STATUS_IGNORE));
      it = flag != 0 ? sends_.erase(it) : std::next(it);
    }
  }

  MPI_Comm comm_;
  int rank_;
  int size_;
  std::vector<std::string> names_;
  std::deque<Send> sends_;
};

}  // namespace

std::unique_ptr<Mailbox> MpiCommunicator::openMailbox() {
  barrier();  // every rank is here: MPI_Comm_dup below cannot wait for a missing one
  MPI_Comm comm = MPI_COMM_NULL;
  LRFIND_MPI_CHECK(MPI_Comm_dup(impl_->comm.get(), &comm));
  return std::make_unique<MpiMailbox>(comm, rank_, size_, peerNames());
}

}  // namespace lrfind::comm
