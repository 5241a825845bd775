#include "text/parsers/stop_string_matcher.h"

#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/text/parsers/splits.h"

namespace stepserve::text {
namespace {

using testing::AllSplits;
using testing::Describe;

struct Outcome {
  std::string text;
  bool stopped = false;
  std::string matched;
};

// Feeds the split; checks that what was shown so far is always a prefix of `expected.text`, that the
// held-back tail never exceeds the longest stop string, and that the outcome is `expected`.
void ExpectOutcome(const std::vector<std::string>& stops, bool include, const std::string& text,
                   const Outcome& expected, int random_count = 64) {
  std::size_t longest = 0;
  for (const auto& s : stops) longest = std::max(longest, s.size());
  for (const auto& split : AllSplits(text, random_count)) {
    SCOPED_TRACE(Describe(split));
    StopStringMatcher matcher(stops, include);
    std::string shown;
    bool stopped = false;
    std::string matched;
    for (const auto& piece : split) {
      StopStringMatcher::Result r = matcher.Feed(piece);
      if (stopped) {
        EXPECT_TRUE(r.stopped);
        EXPECT_EQ(r.text, "");
      }
      shown += r.text;
      ASSERT_EQ(expected.text.compare(0, shown.size(), shown), 0) << shown;
      EXPECT_LE(matcher.held(), longest > 0 ? longest - 1 : 0);
      if (r.stopped) {
        stopped = true;
        matched = r.matched;
      }
    }
    shown += matcher.Finish();
    EXPECT_EQ(shown, expected.text);
    EXPECT_EQ(stopped, expected.stopped);
    EXPECT_EQ(matched, expected.matched);
  }
}

TEST(StopStringMatcherTest, MatchAcrossEverySplit) {
  ExpectOutcome({"STOP"}, false, "hello STOP world", {"hello ", true, "STOP"});
  ExpectOutcome({"STOP"}, true, "hello STOP world", {"hello STOP", true, "STOP"});
}

TEST(StopStringMatcherTest, NoStopLeavesTextUnchanged) {
  ExpectOutcome({"STOP", "</s>"}, false, "STO ST S </ </s x STOp", {"STO ST S </ </s x STOp", false, ""});
  ExpectOutcome({}, false, "anything", {"anything", false, ""});
  ExpectOutcome({""}, true, "empty stop strings are ignored", {"empty stop strings are ignored", false, ""});
}

TEST(StopStringMatcherTest, FirstEndingMatchWins) {
  // "bc" ends before "abcd" does.
  ExpectOutcome({"abcd", "bc"}, false, "xabcdy", {"xa", true, "bc"});
  ExpectOutcome({"abcd", "bc"}, true, "xabcdy", {"xabc", true, "bc"});
  // Overlapping occurrences of one stop string: the first.
  ExpectOutcome({"aba"}, false, "xxababa", {"xx", true, "aba"});
}

TEST(StopStringMatcherTest, StopStringsThatArePrefixesOfEachOther) {
  ExpectOutcome({"abc", "ab"}, false, "zabcz", {"z", true, "ab"});
  ExpectOutcome({"ab", "abc"}, true, "zabcz", {"zab", true, "ab"});
  // Same end: the longer one (which starts earlier) wins.
  ExpectOutcome({"bc", "abc"}, false, "zabcz", {"z", true, "abc"});
  ExpectOutcome({"bc", "abc"}, true, "zabcz", {"zabc", true, "abc"});
  ExpectOutcome({"aab"}, false, "aaab!", {"a", true, "aab"});
}

TEST(StopStringMatcherTest, UnicodeStopStrings) {
  ExpectOutcome({"。\n"}, false, "第一句。\n第二句", {"第一句", true, "。\n"});
  ExpectOutcome({"😀"}, true, "ok 😀 more", {"ok 😀", true, "😀"});
}

TEST(StopStringMatcherTest, HoldsBackOnlyAPossibleStart) {
  StopStringMatcher matcher({"</s>", "<|end|>"}, false);
  EXPECT_EQ(matcher.Feed("abc<").text, "abc");
  EXPECT_EQ(matcher.held(), 1u);
  EXPECT_EQ(matcher.Feed("|en").text, "");
  EXPECT_EQ(matcher.held(), 4u);
  EXPECT_EQ(matcher.Feed("x").text, "<|enx");
  EXPECT_EQ(matcher.held(), 0u);
  StopStringMatcher::Result r = matcher.Feed("y</s>ignored");
  EXPECT_EQ(r.text, "y");
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.matched, "</s>");
  EXPECT_TRUE(matcher.stopped());
  EXPECT_EQ(matcher.Finish(), "");
}

// The reference: the earliest position where some stop string ends; the longest of those ending there.
Outcome Naive(const std::vector<std::string>& stops, bool include, const std::string& text) {
  for (std::size_t end = 1; end <= text.size(); ++end) {
    const std::string* best = nullptr;
    for (const auto& s : stops) {
      if (!s.empty() && s.size() <= end && text.compare(end - s.size(), s.size(), s) == 0 &&
          (best == nullptr || s.size() > best->size())) {
        best = &s;
      }
    }
    if (best != nullptr) return {text.substr(0, include ? end : end - best->size()), true, *best};
  }
  return {text, false, ""};
}

TEST(StopStringMatcherTest, RandomAgainstNaiveReference) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> letter(0, 2);
  auto random_string = [&](int n) {
    std::string s;
    for (int i = 0; i < n; ++i) s.push_back(static_cast<char>('a' + letter(rng)));
    return s;
  };
  for (int round = 0; round < 200; ++round) {
    std::vector<std::string> stops;
    int count = 1 + static_cast<int>(rng() % 16);
    for (int i = 0; i < count; ++i) stops.push_back(random_string(1 + static_cast<int>(rng() % 7)));
    std::string text = random_string(static_cast<int>(rng() % 30));
    bool include = rng() % 2;
    SCOPED_TRACE(text);
    ExpectOutcome(stops, include, text, Naive(stops, include, text), /*random_count=*/4);
  }
}

TEST(StopStringMatcherTest, ManyLongStopStrings) {
  std::vector<std::string> stops;
  for (int i = 0; i < 16; ++i) stops.push_back(std::string(255, 'a') + static_cast<char>('A' + i));
  std::string text = std::string(1000, 'a') + "P" + std::string(10, 'a');
  ExpectOutcome(stops, false, text, Naive(stops, false, text), /*random_count=*/4);
  EXPECT_EQ(Naive(stops, false, text).text, std::string(1000 - 255, 'a'));
  // Beyond the server's caps: 100 stop strings of 10000 bytes still work.
  std::vector<std::string> big;
  for (int i = 0; i < 100; ++i) big.push_back(std::string(9999, 'b') + std::to_string(i % 10) + "x" + std::to_string(i));
  StopStringMatcher matcher(big, false);
  std::string long_text = std::string(20000, 'b') + "7x7tail";
  std::string shown;
  bool stopped = false;
  for (std::size_t at = 0; at < long_text.size() && !stopped; at += 3) {
    auto r = matcher.Feed(std::string_view(long_text).substr(at, 3));
    shown += r.text;
    stopped = r.stopped;
  }
  EXPECT_TRUE(stopped);
  EXPECT_EQ(shown, std::string(20000 - 9999, 'b'));
}

}  // namespace
}  // namespace stepserve::text
