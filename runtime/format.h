#pragma once
// Number formats shared by the console progress and the reports; nothing heavier than
// <string> here, so that the progress bar does not compile against the results file.

#include <string>

namespace lrfind::runtime {

// "3.16e-03"-style: three significant digits; "none" when not finite.
std::string formatLr(double lr);

// A duration as tqdm shows it: "00:12", "59:59", "1:02:03"; "?" when not finite or
// negative.
std::string formatDuration(double seconds);

}  // namespace lrfind::runtime
