#include "text/parsers/chat_output.h"

#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/text/parsers/splits.h"

namespace stepserve::text {
namespace {

using nlohmann::json;
using testing::AllSplits;
using testing::Describe;

ChatOutputOptions Options(bool reasoning = true, bool tools = true) {
  ChatOutputOptions o;
  o.parse_reasoning = reasoning;
  o.parse_tool_calls = tools;
  o.tools = json::parse(R"([{"type": "function", "function": {"name": "add", "parameters": {"type": "object",
      "properties": {"a": {"type": "integer"}, "b": {"type": "number"}, "note": {"type": "string"}}}}}])");
  o.tool_call_options.make_id = [](int i) { return "id" + std::to_string(i); };
  return o;
}

struct Collected {
  std::string reasoning, content;
  std::map<int, std::string> names, arguments;
};

// Streams `text` in `split`, checking every delta against the final result, and returns the final.
ChatOutputParser::Final Stream(const ChatOutputOptions& options, const testing::Split& split, Collected* got) {
  ChatOutputParser parser(options);
  for (const auto& piece : split) {
    ChatOutputParser::Delta d = parser.Feed(piece);
    got->reasoning += d.reasoning;
    got->content += d.content;
    for (const auto& call : d.tool_calls) {
      if (call.name) got->names[call.index] = *call.name;
      got->arguments[call.index] += call.arguments;
    }
  }
  ChatOutputParser::Final final = parser.Finish();
  got->reasoning += final.delta.reasoning;
  got->content += final.delta.content;
  for (const auto& call : final.delta.tool_calls) {
    if (call.name) got->names[call.index] = *call.name;
    got->arguments[call.index] += call.arguments;
  }
  return final;
}

TEST(ChatOutputParserTest, ReasoningContentAndToolCallsOverEverySplit) {
  const std::string text =
      "The user wants 2+3.5; I'll call add.\n</think>\nLet me compute <that>.\n\n<tool_call>\n<function=add>\n"
      "<parameter=a>\n2\n</parameter>\n<parameter=b>\n3.5\n</parameter>\n<parameter=note>\nsum </think>\n"
      "</parameter>\n</function>\n</tool_call>\n";
  for (const auto& split : AllSplits(text)) {
    SCOPED_TRACE(Describe(split));
    Collected got;
    ChatOutputParser::Final final = Stream(Options(), split, &got);
    EXPECT_EQ(final.reasoning, "The user wants 2+3.5; I'll call add.");
    EXPECT_EQ(final.content, "Let me compute <that>.\n\n");
    ASSERT_EQ(final.tool_calls.size(), 1u);
    EXPECT_EQ(final.tool_calls[0].id, "id0");
    EXPECT_EQ(final.tool_calls[0].name, "add");
    EXPECT_EQ(json::parse(final.tool_calls[0].arguments), json::parse(R"({"a": 2, "b": 3.5, "note": "sum </think>"})"));
    EXPECT_EQ(final.finish_reason_override, "tool_calls");
    EXPECT_EQ(got.reasoning, final.reasoning);
    EXPECT_EQ(got.content, final.content);
    EXPECT_EQ(got.names.at(0), "add");
    EXPECT_EQ(got.arguments.at(0), final.tool_calls[0].arguments);
  }
}

TEST(ChatOutputParserTest, ToolCallInsideReasoningIsReasoning) {
  const std::string text = "maybe <tool_call>\n<function=add>\n</function>\n</tool_call>\n</think>\nNo call.";
  for (const auto& split : AllSplits(text)) {
    SCOPED_TRACE(Describe(split));
    Collected got;
    ChatOutputParser::Final final = Stream(Options(), split, &got);
    EXPECT_EQ(final.reasoning, "maybe <tool_call>\n<function=add>\n</function>\n</tool_call>");
    EXPECT_EQ(final.content, "No call.");
    EXPECT_TRUE(final.tool_calls.empty());
    EXPECT_FALSE(final.finish_reason_override.has_value());
    EXPECT_EQ(got.reasoning, final.reasoning);
    EXPECT_EQ(got.content, final.content);
  }
}

TEST(ChatOutputParserTest, SwitchesOff) {
  const std::string text = "r\n</think>\n<tool_call>\n<function=add>\n</function>\n</tool_call>";
  Collected got;
  ChatOutputParser::Final no_tools = Stream(Options(true, false), {text}, &got);
  EXPECT_EQ(no_tools.reasoning, "r");
  EXPECT_EQ(no_tools.content, "<tool_call>\n<function=add>\n</function>\n</tool_call>");
  EXPECT_TRUE(no_tools.tool_calls.empty());
  EXPECT_EQ(got.content, no_tools.content);

  Collected got2;
  ChatOutputParser::Final no_reasoning = Stream(Options(false, true), {text}, &got2);
  EXPECT_EQ(no_reasoning.reasoning, "");
  EXPECT_EQ(no_reasoning.content, "r\n</think>\n");
  ASSERT_EQ(no_reasoning.tool_calls.size(), 1u);
  EXPECT_EQ(no_reasoning.tool_calls[0].arguments, "{}");

  Collected got3;
  ChatOutputParser::Final neither = Stream(Options(false, false), {"a", "b"}, &got3);
  EXPECT_EQ(neither.content, "ab");
  EXPECT_EQ(got3.content, "ab");
}

TEST(ChatOutputParserTest, TruncatedCallIsFlagged) {
  Collected got;
  ChatOutputParser::Final final =
      Stream(Options(), {"r</think><tool_call>\n<function=add>\n<parameter=a>\n1"}, &got);
  ASSERT_EQ(final.tool_calls.size(), 1u);
  EXPECT_TRUE(final.tool_calls[0].truncated);
  EXPECT_EQ(final.tool_calls[0].arguments, R"({"a":1})");
  EXPECT_EQ(got.arguments.at(0), R"({"a":1})");
}

}  // namespace
}  // namespace stepserve::text
