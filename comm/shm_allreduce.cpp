#include "comm/shm_allreduce.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <deque>
#include <random>
#include <vector>

#include <ATen/ATen.h>

#include "common/error.h"

namespace lrfind::comm {
namespace {

constexpr std::size_t kPage = 4096;
constexpr std::size_t kLine = 64;
constexpr std::size_t kNameWords = 8;  // the segment's name travels as 8 int64 (64 bytes)

std::size_t roundUp(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }

// Counters shared between processes: GCC's atomics on plain int64 in the mapping.
int64_t loadAcquire(const int64_t* p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
void storeRelease(int64_t* p, int64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

// One mapping of the segment; unmapped when the last tensor over it goes.
struct Mapping {
  void* base = MAP_FAILED;
  std::size_t bytes = 0;
  ~Mapping() {
    if (base != MAP_FAILED) munmap(base, bytes);
  }
};

// The segment's layout for `size` ranks with buffers of `buffer_bytes` each.
struct Layout {
  std::size_t header, stride, total;
  Layout(int size, std::size_t buffer_bytes)
      : header(roundUp(kLine + static_cast<std::size_t>(size) * 2 * kLine, kPage)),
        stride(roundUp(std::max<std::size_t>(buffer_bytes, 1), kPage)),
        total(header + static_cast<std::size_t>(size) * stride) {}
  std::size_t ready(int r) const { return kLine + static_cast<std::size_t>(r) * 2 * kLine; }
  std::size_t done(int r) const { return ready(r) + kLine; }
  std::size_t buffer(int r) const { return header + static_cast<std::size_t>(r) * stride; }
};

std::string errnoText(const char* call) { return concat(call, ": ", std::strerror(errno)); }

// Maps the segment `name`, creating it (rank 0) with every page allocated up front:
// tmpfs that is too small fails here, not with SIGBUS in the middle of a step.
std::shared_ptr<Mapping> mapSegment(const std::string& name, std::size_t bytes, bool create, std::string* why) {
  const int fd = shm_open(name.c_str(), create ? O_RDWR | O_CREAT | O_EXCL : O_RDWR, 0600);
  if (fd < 0) {
    *why = errnoText(concat("shm_open ", name).c_str());
    return nullptr;
  }
  auto mapping = std::make_shared<Mapping>();
  bool ok = true;
  if (create) {
    if (ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
      *why = errnoText("ftruncate");
      ok = false;
    } else if (const int rc = posix_fallocate(fd, 0, static_cast<off_t>(bytes)); rc != 0) {
      errno = rc;
      *why = errnoText(concat("posix_fallocate of ", bytes, " bytes in /dev/shm").c_str());
      ok = false;
    }
  } else {
    struct stat st {};
    if (fstat(fd, &st) != 0 || static_cast<std::size_t>(st.st_size) != bytes) {
      *why = concat("shared-memory segment ", name, " has the wrong size");
      ok = false;
    }
  }
  if (ok) {
    mapping->base = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    mapping->bytes = bytes;
    if (mapping->base == MAP_FAILED) {
      *why = errnoText("mmap");
      ok = false;
    }
  }
  close(fd);
  if (!ok && create) shm_unlink(name.c_str());
  return ok ? mapping : nullptr;
}

class ShmBuffer;

class ShmWork final : public Work {
 public:
  ShmWork(ShmBuffer& owner, int64_t number) : owner_(owner), number_(number) {}
  bool test() override;
  void wait() override;

 private:
  ShmBuffer& owner_;
  int64_t number_;
};

class ShmBuffer final : public SharedBuffer {
 public:
  ShmBuffer(Communicator& comm, std::shared_ptr<Mapping> mapping, const Layout& layout, int64_t numel,
            c10::ScalarType dtype, ShmHooks hooks)
      : comm_(comm), mapping_(std::move(mapping)), layout_(layout), hooks_(std::move(hooks)) {
    auto* base = static_cast<char*>(mapping_->base);
    const auto options = at::TensorOptions().dtype(dtype);
    for (int q = 0; q < comm_.size(); ++q) {
      // Each tensor holds the mapping: it stays mapped while any view of it lives.
      std::shared_ptr<Mapping> keep = mapping_;
      buffers_.push_back(at::from_blob(
          base + layout_.buffer(q), {numel}, [keep](void*) {}, options));
      ready_.push_back(reinterpret_cast<int64_t*>(base + layout_.ready(q)));
      done_.push_back(reinterpret_cast<int64_t*>(base + layout_.done(q)));
    }
    if (hooks_.set_poller) hooks_.set_poller(this, [this] { progress(); });
  }

  ~ShmBuffer() override {
    if (hooks_.set_poller) hooks_.set_poller(this, nullptr);
  }
  ShmBuffer(const ShmBuffer&) = delete;
  ShmBuffer& operator=(const ShmBuffer&) = delete;

  at::Tensor local() const override { return buffers_[static_cast<std::size_t>(comm_.rank())]; }

  std::unique_ptr<Work> allreduceAsync(int64_t offset, int64_t numel) override {
    LRFIND_CHECK(offset >= 0 && numel >= 0 && offset + numel <= buffers_.front().numel(),
                 "shared-buffer range [", offset, ", ", offset + numel, ") outside its ", buffers_.front().numel(),
                 " elements");
    const int64_t number = ++started_;
    pending_.push_back({number, offset, numel});
    // What this rank wrote into the range is visible to anyone who reads ready >= number.
    storeRelease(ready_[static_cast<std::size_t>(comm_.rank())], number);
    progress();
    return std::make_unique<ShmWork>(*this, number);
  }

  // Sums this rank's piece of every started bucket whose ranks are all ready, in order.
  void progress() {
    while (!pending_.empty() && allAtLeast(ready_, pending_.front().number)) {
      const Range range = pending_.front();
      const int rank = comm_.rank(), size = comm_.size();
      const int64_t begin = range.offset + range.numel * rank / size;
      const int64_t end = range.offset + range.numel * (rank + 1) / size;
      if (end > begin) sumPiece(begin, end - begin);
      storeRelease(done_[static_cast<std::size_t>(rank)], range.number);
      pending_.pop_front();
    }
  }

  // buffers_[0] + buffers_[1] + ... in rank order, whoever owns the piece: each
  // element's sum does not depend on how the buffer is cut into buckets and pieces. The
  // sum goes into every rank's buffer.
  void sumPiece(int64_t begin, int64_t n) {
    if (buffers_.front().scalar_type() == at::kFloat) {
      sumInto<float>(begin, n);
    } else {
      sumInto<double>(begin, n);
    }
  }

  // In blocks that stay in L1: each element is read once from every buffer and written
  // once to every buffer (a separate add and copy would pass over the piece again).
  // Adds in the element type, as at::add_ does (at np 2 the same bits as MPI's a + b).
  template <typename T>
  void sumInto(int64_t begin, int64_t n) {
    constexpr int64_t kBlock = 2048;
    T sum[kBlock];
    std::vector<T*> base;
    for (const auto& b : buffers_) base.push_back(b.data_ptr<T>() + begin);
    for (int64_t i = 0; i < n; i += kBlock) {
      const int64_t m = std::min(kBlock, n - i);
      const T* a = base[0] + i;
      const T* b = base[1] + i;
      for (int64_t k = 0; k < m; ++k) sum[k] = a[k] + b[k];
      for (std::size_t q = 2; q < base.size(); ++q) {
        const T* c = base[q] + i;
        for (int64_t k = 0; k < m; ++k) sum[k] += c[k];
      }
      for (T* out : base) std::memcpy(out + i, sum, static_cast<std::size_t>(m) * sizeof(T));
    }
  }

  bool complete(int64_t number) {
    if (hooks_.tick) hooks_.tick();
    progress();
    return (pending_.empty() || pending_.front().number > number) && allAtLeast(done_, number);
  }

  void wait(int64_t number) {
    boundedWait([&] { return complete(number); }, comm_.waitPolicy(), comm_.label(), [&] {
      // Those that never published the bucket, else those that did not finish a piece.
      std::vector<int> late = lagging(ready_, number);
      if (late.empty()) late = lagging(done_, number);
      return late.empty() ? std::string("the other ranks (shared-memory allreduce)")
                          : concat(describeRanks(late, comm_.peerNames()), " (shared-memory allreduce)");
    });
  }

 private:
  struct Range {
    int64_t number, offset, numel;
  };

  static bool allAtLeast(const std::vector<int64_t*>& counters, int64_t number) {
    for (const int64_t* c : counters) {
      if (loadAcquire(c) < number) return false;
    }
    return true;
  }

  std::vector<int> lagging(const std::vector<int64_t*>& counters, int64_t number) const {
    std::vector<int> out;
    for (int q = 0; q < comm_.size(); ++q) {
      if (q != comm_.rank() && loadAcquire(counters[static_cast<std::size_t>(q)]) < number) out.push_back(q);
    }
    return out;
  }

  Communicator& comm_;
  std::shared_ptr<Mapping> mapping_;
  Layout layout_;
  ShmHooks hooks_;
  std::vector<at::Tensor> buffers_;
  std::vector<int64_t*> ready_, done_;
  std::deque<Range> pending_;
  int64_t started_ = 0;
};

bool ShmWork::test() { return owner_.complete(number_); }
void ShmWork::wait() { owner_.wait(number_); }

}  // namespace

std::unique_ptr<SharedBuffer> makeShmBuffer(Communicator& comm, int64_t numel, c10::ScalarType dtype,
                                            ShmHooks hooks, std::string* why) {
  std::string reason;
  if (dtype != at::kFloat && dtype != at::kDouble) reason = concat("dtype ", dtype, " (float32/64 only)");
  const Layout layout(comm.size(), static_cast<std::size_t>(numel) * c10::elementSize(dtype));
  // Rank 0 creates the segment and sends its name and a cookie; [0]: whether it exists.
  at::Tensor offer = at::zeros({static_cast<int64_t>(2 + kNameWords)}, at::kLong);
  std::shared_ptr<Mapping> mapping;
  std::string name;
  // Rank 0 unlinks the segment however this ends (a timeout of the exchange below
  // included): once every rank has mapped it, or when it is given up.
  struct Unlink {
    const std::string* name = nullptr;
    ~Unlink() {
      if (name != nullptr) shm_unlink(name->c_str());
    }
  } unlink;
  if (comm.size() < 2) reason = "a world of one has nothing to share";
  if (comm.rank() == 0 && reason.empty()) {
    std::random_device entropy;
    const int64_t cookie = (static_cast<int64_t>(entropy()) << 31) ^ entropy() ^ getpid();
    name = concat("/lrfind-", getpid(), "-", cookie & 0xffffffff);
    mapping = mapSegment(name, layout.total, /*create=*/true, &reason);
    if (mapping) {
      unlink.name = &name;
      *reinterpret_cast<int64_t*>(mapping->base) = cookie;
      auto* o = offer.data_ptr<int64_t>();
      o[0] = 1;
      o[1] = cookie;
      std::memcpy(o + 2, name.c_str(), std::min(name.size(), kNameWords * 8 - 1));
    }
  }
  comm.broadcast(offer);
  const auto* o = offer.data_ptr<int64_t>();
  if (comm.rank() != 0 && reason.empty()) {
    if (o[0] == 0) {
      reason = "rank 0 could not create it";
    } else {
      name = reinterpret_cast<const char*>(o + 2);
      mapping = mapSegment(name, layout.total, /*create=*/false, &reason);
      if (mapping && *reinterpret_cast<const int64_t*>(mapping->base) != o[1]) {
        reason = concat("shared-memory segment ", name, " is not rank 0's (another node's /dev/shm?)");
        mapping.reset();
      }
    }
  }
  // Everyone mapped it, or nobody uses it; then it leaves the file system.
  at::Tensor mapped = at::full({1}, mapping ? 1L : 0L, at::kLong);
  comm.allreduce(mapped, AllreduceOptions{ReduceOp::kMin});
  if (mapped.item<int64_t>() == 0) {
    if (why != nullptr) *why = reason.empty() ? std::string("another rank could not map it") : reason;
    return nullptr;
  }
  return std::make_unique<ShmBuffer>(comm, std::move(mapping), layout, numel, dtype, std::move(hooks));
}

}  // namespace lrfind::comm
