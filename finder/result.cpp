#include "finder/result.h"

#include "comm/errors.h"

namespace lrfind::finder {

const Suggestion& SweepResult::suggestion() const {
  for (const auto& s : suggestions) {
    if (s.method == method) return s;
  }
  throw Error(concat("no suggestion computed for method ", toString(method)));
}

}  // namespace lrfind::finder
