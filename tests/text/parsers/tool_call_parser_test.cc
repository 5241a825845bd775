#include "text/parsers/tool_call_parser.h"

#include <map>
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/text/parsers/splits.h"

namespace stepserve::text {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;
using testing::AllSplits;
using testing::Describe;

json Tools() {
  return json::parse(R"([
    {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {
      "city": {"type": "string"}, "days": {"type": "integer"}}}}},
    {"type": "function", "function": {"name": "everything", "parameters": {"type": "object", "properties": {
      "s": {"type": "string"}, "i": {"type": "integer"}, "n": {"type": "number"}, "b": {"type": "boolean"},
      "a": {"type": "array"}, "o": {"type": "object"}, "z": {"type": "null"},
      "maybe": {"type": ["integer", "null"]}, "any_of": {"anyOf": [{"type": "number"}, {"type": "string"}]},
      "e": {"enum": ["x", "y"]}}}}}
  ])");
}

ToolCallParser::Options FixedIds() {
  ToolCallParser::Options options;
  options.make_id = [](int index) { return "call_" + std::to_string(index); };
  return options;
}

struct ExpectedCall {
  std::string name;
  std::string arguments;  // JSON text; compared as (ordered) JSON
  bool truncated = false;
};

struct Case {
  std::string name;
  std::string output;
  std::string content;
  std::vector<ExpectedCall> calls;
};

// gtest prints a failing parameter by its name, not its bytes.
void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

std::vector<Case> Cases() {
  return {
      {"no_call", "Just text, no tools.\n", "Just text, no tools.\n", {}},
      {"whitespace_only_no_call", "\n\n  ", "\n\n  ", {}},
      {"one_call",
       "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n<parameter=days>\n3\n"
       "</parameter>\n</function>\n</tool_call>",
       "",
       {{"get_weather", R"({"city": "Paris", "days": 3})"}}},
      {"text_then_call_then_text",
       "Let me check.\n\n<tool_call>\n<function=get_weather>\n<parameter=city>\nNew York\n</parameter>\n"
       "</function>\n</tool_call>\nDone.",
       "Let me check.\n\n\nDone.",
       {{"get_weather", R"({"city": "New York"})"}}},
      {"two_calls_every_type",
       "<tool_call>\n<function=everything>\n<parameter=s>\n  two\nlines \n</parameter>\n<parameter=i>\n-42\n"
       "</parameter>\n<parameter=n>\n2.5\n</parameter>\n<parameter=b>\nTrue\n</parameter>\n<parameter=a>\n"
       "[1, \"x\", null]\n</parameter>\n<parameter=o>\n{\"k\": {\"v\": [true]}}\n</parameter>\n<parameter=z>\n"
       "null\n</parameter>\n<parameter=maybe>\nNULL\n</parameter>\n<parameter=any_of>\n7\n</parameter>\n"
       "<parameter=e>\ny\n</parameter>\n</function>\n</tool_call>\n<tool_call>\n<function=everything>\n"
       "<parameter=n>\n3.0\n</parameter>\n<parameter=any_of>\nseven\n</parameter>\n<parameter=i>\nnot a number"
       "\n</parameter>\n<parameter=unknown>\n{\"a\": 1}\n</parameter>\n</function>\n</tool_call>\n",
       "",
       {{"everything",
         R"({"s": "  two\nlines ", "i": -42, "n": 2.5, "b": true, "a": [1, "x", null], "o": {"k": {"v": [true]}},
             "z": null, "maybe": null, "any_of": 7, "e": "y"})"},
        {"everything", R"({"n": 3, "any_of": "seven", "i": "not a number", "unknown": "{\"a\": 1}"})"}}},
      {"literal_angle_brackets_in_content",
       "Use <b> and a <tool tag, or <tool_call without closing, even </think> and <tool_calls>.",
       "Use <b> and a <tool tag, or <tool_call without closing, even </think> and <tool_calls>.",
       {}},
      {"not_a_call_is_content", "a <tool_call>not a function</tool_call> b",
       "a <tool_call>not a function</tool_call> b", {}},
      {"empty_call_is_content", "x<tool_call>\n</tool_call>", "x<tool_call>\n</tool_call>", {}},
      {"unterminated_before_name_is_content", "Calling: <tool_call>\n<function=get_wea",
       "Calling: <tool_call>\n<function=get_wea", {}},
      {"truncated_inside_value",
       "<tool_call>\n<function=get_weather>\n<parameter=days>\n2\n</parameter>\n<parameter=city>\nLos Ang", "",
       {{"get_weather", R"({"days": 2, "city": "Los Ang"})", true}}},
      {"truncated_between_parameters",
       "<tool_call>\n<function=get_weather>\n<parameter=city>\nRome\n</parameter>\n", "",
       {{"get_weather", R"({"city": "Rome"})", true}}},
      {"missing_call_end_is_not_truncation",
       "<tool_call>\n<function=get_weather>\n<parameter=city>\nOslo\n</parameter>\n</function>\n", "",
       {{"get_weather", R"({"city": "Oslo"})"}}},
      {"missing_parameter_end",
       "<tool_call>\n<function=get_weather>\n<parameter=city>\nLima\n<parameter=days>\n1\n</function>\n"
       "</tool_call>",
       "",
       {{"get_weather", R"({"city": "Lima", "days": 1})"}}},
      {"unknown_tool_is_reported",
       "<tool_call>\n<function=launch_rocket>\n<parameter=count>\n3\n</parameter>\n</function>\n</tool_call>",
       "",
       {{"launch_rocket", R"({"count": "3"})"}}},
      {"no_parameters", "<tool_call>\n<function=get_weather>\n</function>\n</tool_call>", "",
       {{"get_weather", "{}"}}},
      {"value_with_markup",
       "<tool_call>\n<function=everything>\n<parameter=s>\n<div>a < b && c > d</div>\n<tool_call> inside\n"
       "</parameter>\n</function>\n</tool_call>",
       "",
       {{"everything", R"({"s": "<div>a < b && c > d</div>\n<tool_call> inside"})"}}},
      {"unicode",
       "天气？\n<tool_call>\n<function=get_weather>\n<parameter=city>\n東京 😀\n</parameter>\n</function>\n"
       "</tool_call>",
       "天气？\n",
       {{"get_weather", R"({"city": "東京 😀"})"}}},
      {"calls_back_to_back_without_call_end",
       "<tool_call>\n<function=get_weather>\n<parameter=city>\nA\n</parameter>\n</function>\n<tool_call>\n"
       "<function=get_weather>\n<parameter=city>\nB\n</parameter>\n</function>\n</tool_call>",
       "",
       {{"get_weather", R"({"city": "A"})"}, {"get_weather", R"({"city": "B"})"}}},
      {"text_between_calls_kept",
       "<tool_call>\n<function=get_weather>\n</function>\n</tool_call>\nand then\n<tool_call>\n"
       "<function=get_weather>\n</function>\n</tool_call>\n\n",
       "\nand then\n",
       {{"get_weather", "{}"}, {"get_weather", "{}"}}},
      {"bad_function_name_is_content", "<tool_call>\n<function=a<b>\n</function>\n</tool_call>",
       "<tool_call>\n<function=a<b>\n</function>\n</tool_call>", {}},
      {"second_block_valid_after_bad_one",
       "x <tool_call> oops\n<tool_call>\n<function=get_weather>\n<parameter=days>\n 4 \n</parameter>\n"
       "</function>\n</tool_call>",
       "x <tool_call> oops\n",
       {{"get_weather", R"({"days": 4})"}}},
      {"empty", "", "", {}},
  };
}

class ToolCallSplitTest : public ::testing::TestWithParam<Case> {};

TEST_P(ToolCallSplitTest, EverySplitGivesTheSameResultAndNoPartialTag) {
  const Case& c = GetParam();
  for (const auto& split : AllSplits(c.output)) {
    SCOPED_TRACE(Describe(split));
    ToolCallParser parser(Tools(), FixedIds());
    std::string content;
    struct Streamed {
      std::string id, name, arguments;
    };
    std::map<int, Streamed> streamed;
    auto take = [&](const ToolCallParser::Delta& d) {
      content += d.content;
      ASSERT_EQ(c.content.compare(0, content.size(), content), 0) << "content so far: " << content;
      for (const auto& call : d.tool_calls) {
        Streamed& s = streamed[call.index];
        if (call.name) {
          ASSERT_TRUE(s.name.empty()) << "name sent twice";
          s.name = *call.name;
          s.id = call.id;
        }
        EXPECT_EQ(call.id, s.id);
        s.arguments += call.arguments;
      }
    };
    for (const auto& piece : split) take(parser.Feed(piece));
    ToolCallParser::Final final = parser.Finish();
    take(final.delta);
    EXPECT_EQ(content, c.content);
    EXPECT_EQ(final.content, c.content);
    ASSERT_EQ(final.tool_calls.size(), c.calls.size());
    ASSERT_EQ(streamed.size(), c.calls.size());
    for (std::size_t i = 0; i < c.calls.size(); ++i) {
      SCOPED_TRACE(i);
      const ToolCall& got = final.tool_calls[i];
      EXPECT_EQ(got.id, "call_" + std::to_string(i));
      EXPECT_EQ(got.name, c.calls[i].name);
      EXPECT_EQ(ordered_json::parse(got.arguments), ordered_json::parse(c.calls[i].arguments)) << got.arguments;
      EXPECT_EQ(got.truncated, c.calls[i].truncated);
      const Streamed& s = streamed.at(static_cast<int>(i));
      EXPECT_EQ(s.id, got.id);
      EXPECT_EQ(s.name, got.name);
      EXPECT_EQ(s.arguments, got.arguments);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Outputs, ToolCallSplitTest, ::testing::ValuesIn(Cases()),
                         [](const auto& info) { return info.param.name; });

TEST(ToolCallParserTest, NameStreamsBeforeArguments) {
  ToolCallParser parser(Tools(), FixedIds());
  ToolCallParser::Delta d = parser.Feed("Sure.<tool_call>\n<function=get_weather>\n<parameter=city>\nPar");
  EXPECT_EQ(d.content, "Sure.");
  ASSERT_EQ(d.tool_calls.size(), 1u);
  EXPECT_EQ(d.tool_calls[0].index, 0);
  EXPECT_EQ(d.tool_calls[0].id, "call_0");
  EXPECT_EQ(d.tool_calls[0].name, "get_weather");
  EXPECT_EQ(d.tool_calls[0].arguments, "");
  d = parser.Feed("is\n</parameter>\n</func");
  EXPECT_TRUE(d.tool_calls.empty());
  d = parser.Feed("tion>");
  ASSERT_EQ(d.tool_calls.size(), 1u);
  EXPECT_FALSE(d.tool_calls[0].name.has_value());
  EXPECT_EQ(d.tool_calls[0].arguments, R"({"city":"Paris"})");
}

TEST(ToolCallParserTest, HoldsBackAPossibleTagStart) {
  ToolCallParser parser(Tools(), FixedIds());
  EXPECT_EQ(parser.Feed("a <tool_c").content, "a ");
  EXPECT_EQ(parser.Feed("all").content, "");
  EXPECT_EQ(parser.Feed("s>").content, "<tool_calls>");
}

TEST(ToolCallParserTest, DefaultIdsAreDistinctAndOpenAiShaped) {
  ToolCallParser parser(Tools());
  parser.Feed("<tool_call>\n<function=get_weather>\n</function>\n</tool_call><tool_call>\n<function=get_weather>\n"
              "</function>\n</tool_call>");
  ToolCallParser::Final final = parser.Finish();
  ASSERT_EQ(final.tool_calls.size(), 2u);
  for (const auto& call : final.tool_calls) {
    EXPECT_EQ(call.id.rfind("call_", 0), 0u);
    EXPECT_EQ(call.id.size(), 5u + 24u);
  }
  EXPECT_NE(final.tool_calls[0].id, final.tool_calls[1].id);
}

TEST(ToolCallParserTest, LongValueFedByteByByteStaysLinear) {
  std::string value(200000, 'x');
  std::string text = "<tool_call>\n<function=get_weather>\n<parameter=city>\n" + value +
                     "\n</parameter>\n</function>\n</tool_call>";
  ToolCallParser parser(Tools(), FixedIds());
  for (char ch : text) parser.Feed(std::string_view(&ch, 1));
  ToolCallParser::Final final = parser.Finish();
  ASSERT_EQ(final.tool_calls.size(), 1u);
  EXPECT_EQ(json::parse(final.tool_calls[0].arguments)["city"], value);
}

}  // namespace
}  // namespace stepserve::text
