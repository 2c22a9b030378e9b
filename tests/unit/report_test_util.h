#pragma once
// What the tests of the reports (report_test, grid_report_test) build their sweeps with
// and read the SVG and text back with: a range-test curve, the elements and attributes
// of an SVG, the lines of a text.

#include <cmath>
#include <cstddef>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "finder/options.h"
#include "finder/result.h"
#include "finder/suggest.h"

namespace lrfind::testing {

// 30 steps over min_lr..min_lr*1e4 with the losses `loss(k)`, and every suggestion.
template <typename F>
finder::SweepResult curveOf(const finder::SweepOptions& o, F loss) {
  finder::SweepResult r;
  for (int k = 0; k < 30; ++k) {
    r.lr.push_back(o.min_lr * std::pow(1e4, k / 29.0));
    r.loss.push_back(loss(k));
    r.loss_raw.push_back(r.loss.back());
  }
  r.stop_reason = finder::StopReason::kCompleted;
  r.suggestions = finder::suggestAll({r.lr, r.loss, o.mode, o.skip_begin, o.skip_end});
  return r;
}

// Every element that starts with `start` ("<circle class=\"marker\""), up to its end.
inline std::vector<std::string> elements(const std::string& svg, const std::string& start) {
  std::vector<std::string> out;
  for (auto at = svg.find(start); at != std::string::npos; at = svg.find(start, at + 1)) {
    out.push_back(svg.substr(at, svg.find('>', at) - at + 1));
  }
  return out;
}

// The value of attribute `name` of `element`; "" when it has none.
inline std::string attr(const std::string& element, const std::string& name) {
  std::smatch m;
  const std::regex re(" " + name + "=\"([^\"]*)\"");
  return std::regex_search(element, m, re) ? m[1].str() : std::string();
}

// The lines of `text`, without their '\n'.
inline std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

}  // namespace lrfind::testing
