// Shared by the streaming parsers: how much of a text's tail could be the beginning of a tag.
#ifndef STEPSERVE_TEXT_PARSERS_PARTIAL_TAG_H_
#define STEPSERVE_TEXT_PARSERS_PARTIAL_TAG_H_

#include <algorithm>
#include <cstddef>
#include <string_view>

namespace stepserve::text {

// Length of the longest suffix of `text` that is a proper, non-empty prefix of `tag` (0 if none). A
// streaming parser holds that many bytes back: they may yet turn into `tag`.
inline std::size_t PartialTagSuffix(std::string_view text, std::string_view tag) {
  if (tag.empty()) return 0;
  for (std::size_t n = std::min(text.size(), tag.size() - 1); n > 0; --n) {
    if (text.substr(text.size() - n) == tag.substr(0, n)) return n;
  }
  return 0;
}

// Whether `text` is a proper prefix of `tag` (empty counts).
inline bool IsProperPrefixOf(std::string_view text, std::string_view tag) {
  return text.size() < tag.size() && tag.substr(0, text.size()) == text;
}

}  // namespace stepserve::text

#endif  // STEPSERVE_TEXT_PARSERS_PARTIAL_TAG_H_
