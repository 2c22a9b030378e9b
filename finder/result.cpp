#include "finder/result.h"

#include "common/error.h"

namespace lrfind::finder {

const Suggestion& SweepResult::suggestion() const {
  for (const auto& s : suggestions) {
    if (s.method == method) return s;
  }
  throw Error(concat("no suggestion computed for method ", toString(method)));
}

void ObserverList::onStart(const SweepOptions& options, int world_size) {
  for (auto* o : observers_) o->onStart(options, world_size);
}

void ObserverList::onStep(const StepRecord& record) {
  for (auto* o : observers_) o->onStep(record);
}

void ObserverList::onEnd(const SweepResult& result) {
  for (auto* o : observers_) o->onEnd(result);
}

}  // namespace lrfind::finder
