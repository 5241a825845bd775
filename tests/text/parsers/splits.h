// Ways of cutting a text into streaming deltas, for the split-independence tests.
#ifndef STEPSERVE_TESTS_TEXT_PARSERS_SPLITS_H_
#define STEPSERVE_TESTS_TEXT_PARSERS_SPLITS_H_

#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace stepserve::text::testing {

using Split = std::vector<std::string>;

// The whole text; the text cut once at every byte offset; byte by byte; and `random_count` random cuts
// into pieces of 1..max_piece bytes (seeded, so failures reproduce).
inline std::vector<Split> AllSplits(std::string_view text, int random_count = 64, int max_piece = 9,
                                    unsigned seed = 12345) {
  std::vector<Split> splits;
  splits.push_back({std::string(text)});
  for (std::size_t cut = 0; cut <= text.size(); ++cut) {
    splits.push_back({std::string(text.substr(0, cut)), std::string(text.substr(cut))});
  }
  Split bytes;
  for (char c : text) bytes.emplace_back(1, c);
  splits.push_back(bytes);
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> piece(1, max_piece);
  for (int r = 0; r < random_count; ++r) {
    Split s;
    std::size_t at = 0;
    while (at < text.size()) {
      std::size_t n = std::min<std::size_t>(piece(rng), text.size() - at);
      s.emplace_back(text.substr(at, n));
      at += n;
    }
    splits.push_back(std::move(s));
  }
  return splits;
}

inline std::string Describe(const Split& split) {
  std::string out;
  for (const auto& piece : split) out += "[" + piece + "]";
  return out;
}

}  // namespace stepserve::text::testing

#endif  // STEPSERVE_TESTS_TEXT_PARSERS_SPLITS_H_
