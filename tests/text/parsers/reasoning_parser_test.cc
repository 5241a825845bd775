#include "text/parsers/reasoning_parser.h"

#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/text/parsers/splits.h"

namespace stepserve::text {
namespace {

using testing::AllSplits;
using testing::Describe;

struct Case {
  std::string name;
  std::string output;
  std::string reasoning;
  std::string content;
  bool starts_in_reasoning = true;
};

// gtest prints a failing parameter by its name, not its bytes.
void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

std::vector<Case> Cases() {
  return {
      {"reasoning_and_content", "Let me think.\n</think>\nHello!", "Let me think.", "Hello!"},
      {"reasoning_only", "Still thinking about it", "Still thinking about it", ""},
      {"unterminated_drops_one_trailing_newline", "thinking\n\n", "thinking\n", ""},
      {"leading_think_dropped", "<think>\nabc\n</think>\n\nx", "\nabc", "\nx"},
      {"one_newline_each_side", "a\n\n</think>\n\nb", "a\n", "\nb"},
      {"no_newlines_around_tag", "a</think>b", "a", "b"},
      {"literal_tags",
       "compare </thin, </ and <think> here\n</think>then </think> and <think> and </thi are content",
       "compare </thin, </ and <think> here", "then </think> and <think> and </thi are content"},
      {"end_tag_only", "</think>", "", ""},
      {"end_tag_then_newline_only", "</think>\n", "", ""},
      {"empty", "", "", ""},
      {"unterminated_partial_tag", "abc\n</thi", "abc\n</thi", ""},
      {"partial_start_tag_only", "<thi", "<thi", ""},
      {"lone_newline", "\n", "", ""},
      {"unicode", "思考中…\n</think>\n答案：42 😀", "思考中…", "答案：42 😀"},
      {"content_starts_with_lt", "r\n</think>\n<b>bold</b>", "r", "<b>bold</b>"},
      {"off_plain_content", "Hello\n</think> world", "", "Hello\n</think> world", false},
      {"off_model_opens_think", "<think>r\n</think>\nc", "r", "c", false},
      {"off_not_a_think_tag", "<thinking>x", "", "<thinking>x", false},
      {"off_partial_start", "<thi", "", "<thi", false},
  };
}

class ReasoningSplitTest : public ::testing::TestWithParam<Case> {};

TEST_P(ReasoningSplitTest, EverySplitGivesTheSameResultAndNoPartialTag) {
  const Case& c = GetParam();
  for (const auto& split : AllSplits(c.output)) {
    SCOPED_TRACE(Describe(split));
    ReasoningParser parser(c.starts_in_reasoning);
    std::string reasoning, content;
    for (const auto& piece : split) {
      ReasoningParser::Delta d = parser.Feed(piece);
      // No delta shows text that the final result does not have at that place: a partial tag that
      // later completes would break this.
      reasoning += d.reasoning;
      content += d.content;
      ASSERT_EQ(c.reasoning.compare(0, reasoning.size(), reasoning), 0) << "reasoning so far: " << reasoning;
      ASSERT_EQ(c.content.compare(0, content.size(), content), 0) << "content so far: " << content;
      EXPECT_EQ(d.reasoning.find("</think>"), std::string::npos);
    }
    ReasoningParser::Delta d = parser.Finish();
    reasoning += d.reasoning;
    content += d.content;
    EXPECT_EQ(reasoning, c.reasoning);
    EXPECT_EQ(content, c.content);
  }
}

INSTANTIATE_TEST_SUITE_P(Outputs, ReasoningSplitTest, ::testing::ValuesIn(Cases()),
                         [](const auto& info) { return info.param.name; });

TEST(ReasoningParserTest, HoldsBackOnlyWhatCouldBeTheEndTag) {
  ReasoningParser parser;
  EXPECT_EQ(parser.Feed("abc</th").reasoning, "abc");
  EXPECT_FALSE(parser.reasoning_ended());
  ReasoningParser::Delta d = parser.Feed("ink>");
  EXPECT_EQ(d.reasoning, "");
  EXPECT_EQ(d.content, "");
  EXPECT_TRUE(parser.reasoning_ended());
  EXPECT_EQ(parser.Feed("\nfoo").content, "foo");
  EXPECT_EQ(parser.Feed("\n").content, "\n");  // only the newline right after </think> is dropped
}

TEST(ReasoningParserTest, ReleasesAHeldTailThatDidNotBecomeATag) {
  ReasoningParser parser;
  EXPECT_EQ(parser.Feed("a <").reasoning, "a ");
  EXPECT_EQ(parser.Feed("/b>").reasoning, "</b>");
  EXPECT_EQ(parser.Feed("x\n").reasoning, "x");  // the newline waits: it may precede </think>
  EXPECT_EQ(parser.Feed("y").reasoning, "\ny");
}

TEST(ReasoningParserTest, LeadingThinkWaitsUntilResolved) {
  ReasoningParser parser;
  EXPECT_EQ(parser.Feed("<thi").reasoning, "");
  EXPECT_EQ(parser.Feed("nk>hm").reasoning, "hm");
}

}  // namespace
}  // namespace stepserve::text
