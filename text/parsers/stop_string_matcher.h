// Stop strings (the OpenAI `stop` parameter) matched on detokenized text as it streams, across any
// split of the text into deltas.
//
// Semantics: generation stops at the first place where a stop string ENDS (scanning the text in order,
// as a token-by-token check does; among stop strings ending at the same place, the longest wins). The
// text before the match is returned, plus the stop string when include_stop_str_in_output is set; what
// follows the match (in the same delta) is dropped. Empty stop strings are ignored. vLLM checks after
// each token, in list order, within the new text; it agrees with this whenever the text arrives a token
// at a time and at most one stop string completes per token.
//
// Feed holds back the longest tail of the text that is a proper prefix of some stop string (it may yet
// complete one), never more; Finish returns it once generation ends without a match. Matching is
// Aho-Corasick over bytes: linear in the text, memory linear in the total length of the stop strings, so
// long and many stop strings cost nothing per byte beyond a few table steps. Stop strings apply to the
// raw detokenized text, before reasoning and tool-call parsing.
#ifndef STEPSERVE_TEXT_PARSERS_STOP_STRING_MATCHER_H_
#define STEPSERVE_TEXT_PARSERS_STOP_STRING_MATCHER_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace stepserve::text {

class StopStringMatcher {
 public:
  StopStringMatcher(std::vector<std::string> stops, bool include_stop_str_in_output);

  struct Result {
    std::string text;     // what can be shown now
    bool stopped = false;  // a stop string matched (now or earlier); generation should end
    std::string matched;  // the stop string that matched
  };

  Result Feed(std::string_view delta);
  // End of generation without a match: the held-back tail. Empty after a match.
  std::string Finish();

  bool stopped() const { return stopped_; }
  // Bytes currently held back.
  std::size_t held() const { return pending_.size(); }

 private:
  struct Node {
    std::vector<std::pair<unsigned char, std::int32_t>> next;  // sorted by byte
    std::int32_t fail = 0;
    std::int32_t depth = 0;
    std::int32_t match = -1;  // index of the longest stop string that is a suffix of this node's string
  };

  std::int32_t Child(std::int32_t node, unsigned char c) const;
  std::int32_t Step(std::int32_t node, unsigned char c) const;

  std::vector<std::string> stops_;
  bool include_stop_;
  std::vector<Node> nodes_;
  std::int32_t state_ = 0;
  std::string pending_;  // the held-back tail: the last nodes_[state_].depth bytes of the text
  bool stopped_ = false;
  std::string matched_;
};

}  // namespace stepserve::text

#endif  // STEPSERVE_TEXT_PARSERS_STOP_STRING_MATCHER_H_
