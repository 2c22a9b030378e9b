#include "runtime/grid_run.h"

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <thread>
#include <type_traits>
#include <utility>

#include "common/error.h"
#include "comm/wait.h"
#include "finder/suggest.h"
#include "runtime/app.h"
#include "runtime/async_observer.h"
#include "runtime/format.h"
#include "runtime/results.h"

namespace lrfind::runtime {
namespace {

using Clock = std::chrono::steady_clock;

double seconds(std::chrono::milliseconds d) { return static_cast<double>(d.count()) / 1000; }

enum class Kind : uint8_t { kStart = 1, kStep, kEnd, kFailed, kDone, kAbort, kKeepAlive, kFinish };

// A message's bytes: its Kind, then fields in a fixed order (native byte order: every
// rank of a job runs the same binary on the same kind of machine).
class Writer {
 public:
  explicit Writer(Kind kind) { put(kind); }
  template <typename T>
  Writer& put(const T& value) {
    static_assert(std::is_trivially_copyable_v<T>);
    bytes_.append(reinterpret_cast<const char*>(&value), sizeof(T));
    return *this;
  }
  Writer& put(const std::string& text) {
    put(static_cast<uint64_t>(text.size()));
    bytes_ += text;
    return *this;
  }
  Writer& put(const std::vector<double>& values) {
    put(static_cast<uint64_t>(values.size()));
    for (const double v : values) put(v);
    return *this;
  }
  Writer& put(const std::vector<std::string>& texts) {
    put(static_cast<uint64_t>(texts.size()));
    for (const auto& t : texts) put(t);
    return *this;
  }
  Writer& put(const ParamGroupInfo& g) { return put(g.pattern).put(g.multiplier).put(g.weight_decay).put(g.numel).put(g.names); }
  std::string take() { return std::move(bytes_); }

 private:
  std::string bytes_;
};

class Reader {
 public:
  explicit Reader(const std::string& bytes) : bytes_(bytes) {}
  template <typename T>
  T get() {
    static_assert(std::is_trivially_copyable_v<T>);
    need(sizeof(T));
    T value;
    std::memcpy(&value, bytes_.data() + at_, sizeof(T));
    at_ += sizeof(T);
    return value;
  }
  std::string text() {
    const auto n = static_cast<std::size_t>(get<uint64_t>());
    need(n);
    std::string s = bytes_.substr(at_, n);
    at_ += n;
    return s;
  }
  std::vector<double> doubles() {
    std::vector<double> v(static_cast<std::size_t>(get<uint64_t>()));
    for (double& x : v) x = get<double>();
    return v;
  }
  std::vector<std::string> texts() {
    std::vector<std::string> v(static_cast<std::size_t>(get<uint64_t>()));
    for (auto& t : v) t = text();
    return v;
  }
  ParamGroupInfo paramGroup() {
    ParamGroupInfo g;
    g.pattern = text();
    g.multiplier = get<double>();
    g.weight_decay = get<double>();
    g.numel = get<int64_t>();
    g.names = texts();
    return g;
  }

 private:
  void need(std::size_t n) const {
    LRFIND_CHECK(at_ + n <= bytes_.size(), "grid message cut short (", bytes_.size(), " bytes)");
  }
  const std::string& bytes_;
  std::size_t at_ = 0;
};

std::string encodeStart(const GridSweep& s) {
  const RunInfo& i = s.info;
  Writer w(Kind::kStart);
  w.put(static_cast<uint64_t>(s.index)).put(static_cast<int32_t>(s.group)).put(s.started_at);
  w.put(i.model).put(i.data).put(i.optimizer).put(i.loss_fn).put(i.device);
  w.put(i.labels).put(i.input_type).put(i.input_scale).put(i.normalize).put(static_cast<uint8_t>(i.channels_last));
  w.put(i.batch_size).put(i.global_batch_size).put(i.seed).put(static_cast<int32_t>(i.world_size));
  w.put(i.val_data).put(i.val_labels).put(i.val_samples).put(i.val_batches);
  w.put(static_cast<uint64_t>(i.param_groups.size()));
  for (const auto& g : i.param_groups) w.put(g);
  return w.take();
}

std::string encodeStep(std::size_t index, const finder::StepRecord& r) {
  Writer w(Kind::kStep);
  w.put(static_cast<uint64_t>(index)).put(r.step).put(r.lr).put(r.loss_raw).put(r.loss).put(r.seconds);
  w.put(r.val_loss).put(r.eval_seconds).put(r.loss_scale).put(static_cast<uint8_t>(r.skipped));
  w.put(r.loss_per_rank).put(r.group_lr);
  return w.take();
}

std::string encodeEnd(std::size_t index, const finder::SweepResult& r, double ended_at) {
  Writer w(Kind::kEnd);
  w.put(static_cast<uint64_t>(index)).put(static_cast<int32_t>(r.stop_reason)).put(r.error).put(r.stop_test);
  w.put(r.stop_scale).put(ended_at);
  return w.take();
}

std::string encodeFailed(std::size_t index, const std::string& text, int exit_code) {
  Writer w(Kind::kFailed);
  w.put(static_cast<uint64_t>(index)).put(text).put(static_cast<int32_t>(exit_code));
  return w.take();
}

// The group leader's share of a sweep observer: steps and the end.
class ReportingObserver final : public finder::SweepObserver {
 public:
  ReportingObserver(GridReporter& reporter, std::size_t index) : reporter_(reporter), index_(index) {}
  void onStep(const finder::StepRecord& record) override { reporter_.step(index_, record); }
  void onEnd(const finder::SweepResult& result) override { reporter_.end(index_, result); }

 private:
  GridReporter& reporter_;
  std::size_t index_;
};

class MailboxReporter final : public GridReporter {
 public:
  explicit MailboxReporter(comm::Mailbox& mailbox) : mailbox_(mailbox) {}
  void start(const GridSweep& sweep) override { mailbox_.send(0, encodeStart(sweep)); }
  void step(std::size_t index, const finder::StepRecord& record) override {
    mailbox_.send(0, encodeStep(index, record));
  }
  void end(std::size_t index, const finder::SweepResult& result) override {
    mailbox_.send(0, encodeEnd(index, result, wallClockNow()));
  }
  void failed(std::size_t index, const std::string& text, int exit_code) override {
    mailbox_.send(0, encodeFailed(index, text, exit_code));
  }
  void done() override { mailbox_.send(0, Writer(Kind::kDone).take()); }
  bool aborted(std::string* why) override {
    while (auto m = mailbox_.receive()) {
      Reader r(m->bytes);
      const auto kind = r.get<Kind>();
      if (kind == Kind::kAbort && why_.empty()) why_ = r.text();
      // A keep-alive cannot come before kDone; nothing else comes to a leader.
    }
    if (!why_.empty() && why != nullptr) *why = why_;
    return !why_.empty();
  }

 private:
  comm::Mailbox& mailbox_;
  std::string why_;
};

}  // namespace

double wallClockNow() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::unique_ptr<finder::SweepObserver> sweepReporter(GridReporter& reporter, std::size_t index) {
  return std::make_unique<ReportingObserver>(reporter, index);
}

std::unique_ptr<GridReporter> mailboxReporter(comm::Mailbox& mailbox) {
  return std::make_unique<MailboxReporter>(mailbox);
}

// World rank 0's own group: straight into the collector.
class GridCollector::Local final : public GridReporter {
 public:
  explicit Local(GridCollector& owner) : owner_(owner) {}
  void start(const GridSweep& sweep) override { owner_.onStart(sweep); }
  void step(std::size_t index, const finder::StepRecord& record) override { owner_.onStep(index, record); }
  void end(std::size_t index, const finder::SweepResult& result) override {
    owner_.onEnd(index, result, wallClockNow());
  }
  void failed(std::size_t index, const std::string& text, int exit_code) override {
    owner_.onFailed(index, text, exit_code);
  }
  void done() override { owner_.onDone(0); }
  bool aborted(std::string* why) override {
    owner_.poll();
    if (owner_.abort_sent_ && why != nullptr) *why = owner_.failure_.empty() ? "interrupted" : owner_.failure_;
    return owner_.abort_sent_;
  }

 private:
  GridCollector& owner_;
};

GridCollector::GridCollector(GridPlan plan, const std::string& out, comm::Mailbox* mailbox)
    : plan_(std::move(plan)), mailbox_(mailbox) {
  GridFileInfo info;
  info.axes = plan_.axes;
  info.world_size = plan_.world_size;
  info.ranks_per_sweep = plan_.ranks_per_sweep;
  info.groups = plan_.groups;
  info.config = plan_.config;
  writer_ = std::make_unique<GridResultsWriter>(out, info);
  worker_ = std::make_unique<SerialWorker>();
  local_ = std::make_unique<Local>(*this);
  sweeps_.resize(plan_.points.size());
  group_done_.assign(static_cast<std::size_t>(plan_.groups), false);
  heard_.assign(static_cast<std::size_t>(plan_.groups), Clock::now());
  last_keepalive_ = Clock::now();
}

GridCollector::~GridCollector() {
  worker_.reset();  // the queued writes first, then the writer closes the file
}

GridReporter& GridCollector::localReporter() { return *local_; }

std::string GridCollector::currentPath() const { return writer_->currentPath(); }

void GridCollector::onStart(const GridSweep& header) {
  LRFIND_CHECK(header.index < sweeps_.size() && !sweeps_[header.index], "grid: sweep ", header.index,
               " started twice or out of range");
  auto sweep = std::make_unique<GridSweep>(header);
  sweep->values = plan_.points[header.index].values;
  sweep->options = plan_.options[header.index];
  sweep->result.method = sweep->options.suggest;
  sweep->result.world_size = sweep->info.world_size;
  GridSweep copy = *sweep;
  sweeps_[header.index] = std::move(sweep);
  worker_->submit([this, copy = std::move(copy)] { writer_->startSweep(copy); });
}

void GridCollector::onStep(std::size_t index, const finder::StepRecord& r) {
  LRFIND_CHECK(index < sweeps_.size() && sweeps_[index], "grid: a step of sweep ", index, " that never started");
  finder::SweepResult& res = sweeps_[index]->result;
  res.lr.push_back(r.lr);
  res.loss.push_back(r.loss);
  res.loss_raw.push_back(r.loss_raw);
  res.loss_per_rank.push_back(r.loss_per_rank);
  res.group_lr.push_back(r.group_lr);
  res.step_seconds.push_back(r.seconds);
  if (!sweeps_[index]->info.val_data.empty()) {
    res.val_loss.push_back(r.val_loss);
    res.eval_seconds.push_back(r.eval_seconds);
  }
  if (sweeps_[index]->options.lossScaling()) {
    res.loss_scale.push_back(r.loss_scale);
    res.skipped.push_back(r.skipped ? 1 : 0);
  }
  worker_->submit([this, index, r] { writer_->step(index, r); });
}

void GridCollector::onEnd(std::size_t index, const finder::SweepResult& end, double ended_at) {
  LRFIND_CHECK(index < sweeps_.size() && sweeps_[index], "grid: the end of sweep ", index, " that never started");
  GridSweep& s = *sweeps_[index];
  const finder::StopReason reason = end.stop_reason;
  s.ended_at = ended_at;
  s.result.stop_reason = reason;
  s.result.stop_test = end.stop_test;
  s.result.stop_scale = end.stop_scale;
  s.result.error = end.error;
  const finder::SuggestInput input{s.result.lr, s.result.loss, s.options.mode, s.options.skip_begin,
                                  s.options.skip_end, flagName};
  s.result.suggestions = finder::suggestAll(input);
  s.result.suggestion_warning = finder::edgeWarning(s.result.suggestions, s.options.suggest, input);
  if (reason == finder::StopReason::kInterrupted) interrupted_ = true;
  ++ended_;
  const auto& chosen = s.result.suggestion();
  const std::string group = plan_.groups > 1 ? concat(" on rank group ", s.group) : std::string();
  std::fprintf(stderr, "lrfind_dist: %s%s: %s after %lld steps, suggested lr %s [%zu/%zu sweeps]\n",
               describeGridPoint(plan_.points[index]).c_str(), group.c_str(), finder::toString(reason),
               static_cast<long long>(s.result.stepsCompleted()), chosen.found ? formatLr(chosen.lr).c_str() : "none",
               ended_, plan_.points.size());
  worker_->submit([this, copy = s] { writer_->endSweep(copy); });
}

void GridCollector::onFailed(std::size_t index, const std::string& text, int exit_code) {
  if (failure_.empty()) {
    // The text numbers ranks within the group (its sweep's communicator).
    failure_ = plan_.groups > 1 ? concat(describeGridPoint(plan_.points[index]), " on rank group ", plan_.group_of[index], ": ", text)
                                : concat(describeGridPoint(plan_.points[index]), ": ", text);
    failure_code_ = exit_code;
  }
}

void GridCollector::onDone(int group) { group_done_[static_cast<std::size_t>(group)] = true; }

void GridCollector::handle(const comm::Message& m) {
  const int group = m.source / plan_.ranks_per_sweep;
  heard_[static_cast<std::size_t>(group)] = Clock::now();
  Reader r(m.bytes);
  switch (r.get<Kind>()) {
    case Kind::kStart: {
      GridSweep s;
      s.index = static_cast<std::size_t>(r.get<uint64_t>());
      s.group = r.get<int32_t>();
      s.started_at = r.get<double>();
      s.info.model = r.text();
      s.info.data = r.text();
      s.info.optimizer = r.text();
      s.info.loss_fn = r.text();
      s.info.device = r.text();
      s.info.labels = r.text();
      s.info.input_type = r.text();
      s.info.input_scale = r.get<double>();
      s.info.normalize = r.text();
      s.info.channels_last = r.get<uint8_t>() != 0;
      s.info.batch_size = r.get<int64_t>();
      s.info.global_batch_size = r.get<int64_t>();
      s.info.seed = r.get<int64_t>();
      s.info.world_size = r.get<int32_t>();
      s.info.val_data = r.text();
      s.info.val_labels = r.text();
      s.info.val_samples = r.get<int64_t>();
      s.info.val_batches = r.get<int64_t>();
      s.info.param_groups.resize(static_cast<std::size_t>(r.get<uint64_t>()));
      for (auto& g : s.info.param_groups) g = r.paramGroup();
      onStart(s);
      return;
    }
    case Kind::kStep: {
      const auto index = static_cast<std::size_t>(r.get<uint64_t>());
      finder::StepRecord rec;
      rec.step = r.get<int64_t>();
      rec.lr = r.get<double>();
      rec.loss_raw = r.get<double>();
      rec.loss = r.get<double>();
      rec.seconds = r.get<double>();
      rec.val_loss = r.get<double>();
      rec.eval_seconds = r.get<double>();
      rec.loss_scale = r.get<double>();
      rec.skipped = r.get<uint8_t>() != 0;
      rec.loss_per_rank = r.doubles();
      rec.group_lr = r.doubles();
      onStep(index, rec);
      return;
    }
    case Kind::kEnd: {
      const auto index = static_cast<std::size_t>(r.get<uint64_t>());
      finder::SweepResult end;
      end.stop_reason = static_cast<finder::StopReason>(r.get<int32_t>());
      end.error = r.text();
      end.stop_test = r.text();
      end.stop_scale = r.get<double>();
      onEnd(index, end, r.get<double>());
      return;
    }
    case Kind::kFailed: {
      const auto index = static_cast<std::size_t>(r.get<uint64_t>());
      const std::string text = r.text();
      onFailed(index, text, r.get<int32_t>());
      return;
    }
    case Kind::kDone:
      onDone(group);
      return;
    default:
      throw CommError(concat("grid: unexpected message from rank ", m.source));
  }
}

void GridCollector::poll() {
  if (mailbox_ == nullptr) return;
  while (auto m = mailbox_->receive()) handle(*m);
  if (!failure_.empty() || interrupted_) abort(failure_.empty() ? "a signal stopped a sweep" : failure_);
  const auto now = Clock::now();
  // The ranks of finished groups wait for kFinish; rank 0 tells them it is alive.
  if (now - last_keepalive_ > plan_.timeout / 4) {
    last_keepalive_ = now;
    for (int g = 0; g < plan_.groups; ++g) {
      if (!group_done_[static_cast<std::size_t>(g)]) continue;
      for (int r = g * plan_.ranks_per_sweep; r < (g + 1) * plan_.ranks_per_sweep; ++r) {
        if (r != 0) mailbox_->send(r, Writer(Kind::kKeepAlive).take());
      }
    }
  }
  for (int g = 1; g < plan_.groups; ++g) {
    const auto silent = now - heard_[static_cast<std::size_t>(g)];
    if (group_done_[static_cast<std::size_t>(g)] || silent <= plan_.timeout) continue;
    const int leader = g * plan_.ranks_per_sweep;
    throw comm::CommTimeout(concat("rank group ", g, " (leader ", comm::describeRanks({leader}, plan_.peer_names),
                                   ") did not answer within ", seconds(plan_.timeout),
                                   " s (--comm-timeout): a rank of it stalled or died"));
  }
}

void GridCollector::abort(const std::string& why) {
  if (abort_sent_ || mailbox_ == nullptr) return;
  abort_sent_ = true;
  for (int g = 1; g < plan_.groups; ++g) {
    if (!group_done_[static_cast<std::size_t>(g)]) mailbox_->send(g * plan_.ranks_per_sweep, Writer(Kind::kAbort).put(why).take());
  }
}

void GridCollector::waitForGroups() {
  auto pause = std::chrono::microseconds(50);
  for (;;) {
    poll();
    bool all = true;
    for (const bool done : group_done_) all = all && done;
    if (all) return;
    std::this_thread::sleep_for(pause);
    pause = std::min<std::chrono::microseconds>(pause * 2, std::chrono::milliseconds(5));
  }
}

void GridCollector::releaseRanks(int exit_code) {
  if (mailbox_ == nullptr) return;
  for (int r = 1; r < plan_.world_size; ++r) mailbox_->send(r, Writer(Kind::kFinish).put(static_cast<int32_t>(exit_code)).take());
  comm::WaitPolicy policy;
  policy.timeout = plan_.timeout;
  policy.timeout_option = "--comm-timeout";
  mailbox_->flush(policy, "after the grid");
}

std::vector<GridSweep> GridCollector::finish(finder::StopReason stop, const std::string& error, GridSummary* summary) {
  std::vector<GridSweep> done;
  for (const auto& s : sweeps_) {
    if (s) done.push_back(*s);
  }
  *summary = summarizeGrid(plan_.axes, done);
  worker_->waitIdle();
  worker_->rethrowFailure();
  writer_->finish(done, *summary, stop, error);
  return done;
}

int waitForRelease(comm::Mailbox& mailbox, const comm::WaitPolicy& policy, const std::vector<std::string>& names) {
  // Each message from rank 0 (a keep-alive) starts a new bounded wait for the next.
  for (;;) {
    std::optional<comm::Message> m;
    comm::boundedWait([&] { return (m = mailbox.receive()).has_value(); }, policy, "after this rank's sweeps",
                      [&] { return comm::describeRanks({0}, names); });
    Reader r(m->bytes);
    // Else a kKeepAlive, or a kAbort that came after this group's last sweep: nothing to do.
    if (r.get<Kind>() == Kind::kFinish) return r.get<int32_t>();
  }
}

}  // namespace lrfind::runtime
