#pragma once
// The nearest name to a misspelt one, for "did you mean ...?" in messages: the CLI's
// unknown flags and config keys, the grid's unknown axes.

#include <algorithm>
#include <cctype>
#include <string>
#include <vector>

namespace lrfind {

// Levenshtein distance, ignoring case.
inline std::size_t editDistance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      const bool same = std::tolower(static_cast<unsigned char>(a[i - 1])) ==
                        std::tolower(static_cast<unsigned char>(b[j - 1]));
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (same ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

// The words of a name separated by '-' or '_', sorted and joined by '-': "lr-max" and
// "max_lr" both become "lr-max", the form of "max-lr".
inline std::string sortedWords(const std::string& name) {
  std::vector<std::string> words(1);
  for (char ch : name) {
    if (ch == '-' || ch == '_') {
      words.emplace_back();
    } else {
      words.back() += ch;
    }
  }
  std::sort(words.begin(), words.end());
  std::string text;
  for (const auto& w : words) text += (text.empty() ? "" : "-") + w;
  return text;
}

// The candidate closest to `name` (edit distance over the name as written or over its
// words in any order), or "" when none is within a third of the name's length.
inline std::string closestName(const std::string& name, const std::vector<std::string>& candidates) {
  const std::size_t limit = std::max<std::size_t>(1, name.size() / 3);
  std::string best;
  std::size_t best_distance = limit + 1;
  for (const auto& c : candidates) {
    const std::size_t d = std::min(editDistance(name, c), editDistance(sortedWords(name), sortedWords(c)));
    if (d < best_distance) {
      best = c;
      best_distance = d;
    }
  }
  return best;
}

}  // namespace lrfind
