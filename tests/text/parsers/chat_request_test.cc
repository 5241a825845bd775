#include "text/parsers/chat_request.h"

#include <string>

#include <gtest/gtest.h>

namespace stepserve::text {
namespace {

using nlohmann::json;

// The status message of normalizing `messages_text`, or "OK".
std::string MessagesError(const json& messages) {
  auto r = NormalizeMessages(messages);
  if (r.ok()) return "OK";
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(r.status().message());
}

std::string ToolsError(const json& tools) {
  auto r = NormalizeTools(tools);
  if (r.ok()) return "OK";
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(r.status().message());
}

TEST(NormalizeMessagesTest, PassesAWellFormedConversation) {
  json messages = json::parse(R"([
    {"role": "system", "content": "Be brief."},
    {"role": "developer", "content": "Dev note."},
    {"role": "user", "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": "there"}]},
    {"role": "assistant", "content": null, "reasoning_content": "think",
     "tool_calls": [{"id": "call_1", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\", \"days\": 2}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    {"role": "tool", "content": "no id is fine"},
    {"role": "assistant", "content": "It is sunny.", "reasoning": "easy"}
  ])");
  auto r = NormalizeMessages(messages);
  ASSERT_TRUE(r.ok()) << r.status();
  const json& m = *r;
  ASSERT_EQ(m.size(), messages.size());
  EXPECT_EQ(m[1]["role"], "developer");
  EXPECT_EQ(m[2]["content"], "Hello\nthere");  // text parts flattened
  EXPECT_EQ(m[3]["content"], "");
  EXPECT_EQ(m[3]["tool_calls"][0]["function"]["arguments"], json::parse(R"({"city": "Paris", "days": 2})"));
  EXPECT_EQ(m[3]["tool_calls"][0]["id"], "call_1");
  EXPECT_EQ(m[3]["reasoning_content"], "think");
  EXPECT_EQ(m[3]["reasoning"], "think");
  EXPECT_EQ(m[4]["tool_call_id"], "call_1");
  EXPECT_EQ(m[6]["reasoning_content"], "easy");
  EXPECT_EQ(m[6]["reasoning"], "easy");
}

TEST(NormalizeMessagesTest, ArgumentsAsObjectOrEmpty) {
  auto r = NormalizeMessages(json::parse(R"([{"role": "assistant", "tool_calls": [
    {"function": {"name": "a", "arguments": {"x": 1}}},
    {"function": {"name": "b", "arguments": ""}},
    {"function": {"name": "c"}}]}])"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)[0]["content"], "");
  EXPECT_EQ((*r)[0]["tool_calls"][0]["function"]["arguments"], json::parse(R"({"x": 1})"));
  EXPECT_EQ((*r)[0]["tool_calls"][1]["function"]["arguments"], json::object());
  EXPECT_EQ((*r)[0]["tool_calls"][2]["function"]["arguments"], json::object());
  EXPECT_EQ((*r)[0]["tool_calls"][2]["type"], "function");
}

TEST(NormalizeMessagesTest, ErrorsNameTheField) {
  EXPECT_EQ(MessagesError(json::object()), "messages: must be an array");
  EXPECT_EQ(MessagesError(json::array()), "messages: must not be empty");
  EXPECT_EQ(MessagesError(json::parse(R"([{"role": "user", "content": "a"}, 3])")), "messages[1]: must be an object");
  EXPECT_EQ(MessagesError(json::parse(R"([{"content": "a"}])")), "messages[0].role: required");
  EXPECT_EQ(MessagesError(json::parse(R"([{"role": 1, "content": "a"}])")), "messages[0].role: must be a string");
  EXPECT_EQ(MessagesError(json::parse(R"([{"role": "user", "content": "a"}, {"role": "user", "content": "b"},
      {"role": "user", "content": "c"}, {"role": "foo", "content": "d"}])")),
            "messages[3].role: unknown role 'foo'");
  EXPECT_EQ(MessagesError(json::parse(R"([{"role": "user"}])")), "messages[0].content: required");
  EXPECT_EQ(MessagesError(json::parse(R"([{"role": "user", "content": null}])")),
            "messages[0].content: must be a string or an array of text parts, not null");
  EXPECT_EQ(MessagesError(json::parse(R"([{"role": "user", "content": 5}])")),
            "messages[0].content: must be a string or an array of text parts, not number");
  EXPECT_EQ(MessagesError(json::parse(R"([{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}])")),
            "messages[0].content[0].type: unsupported content part type 'image_url' (this model takes text only)");
  EXPECT_EQ(MessagesError(json::parse(R"([{"role": "user", "content": [{"type": "text"}]}])")),
            "messages[0].content[0].text: must be a string");
  EXPECT_EQ(MessagesError(json::parse(R"([{"role": "user", "content": ["bare"]}])")),
            "messages[0].content[0]: must be an object");
  EXPECT_EQ(MessagesError(json::parse(R"([{"role": "user", "content": "a", "tool_calls": []}])")),
            "messages[0].tool_calls: only assistant messages carry tool calls");
  EXPECT_EQ(MessagesError(json::parse(R"([{"role": "assistant", "tool_calls": {}}])")),
            "messages[0].tool_calls: must be an array");
  EXPECT_EQ(MessagesError(json::parse(R"([{"role": "user", "content": "q"}, {"role": "assistant", "tool_calls": [
      {"function": {"name": "f", "arguments": "{}"}},
      {"function": {"name": "g", "arguments": "{\"a\": "}}]}])")),
            "messages[1].tool_calls[1].function.arguments: is not valid JSON");
  EXPECT_EQ(MessagesError(json::parse(R"([{"role": "assistant", "tool_calls": [
      {"function": {"name": "g", "arguments": "[1, 2]"}}]}])")),
            "messages[0].tool_calls[0].function.arguments: must be a JSON object");
  EXPECT_EQ(MessagesError(json::parse(R"([{"role": "assistant", "tool_calls": [
      {"function": {"name": "g", "arguments": 7}}]}])")),
            "messages[0].tool_calls[0].function.arguments: must be a JSON object or a string holding one");
  EXPECT_EQ(MessagesError(json::parse(R"([{"role": "assistant", "tool_calls": [{"function": {"name": ""}}]}])")),
            "messages[0].tool_calls[0].function.name: must be a non-empty string");
  EXPECT_EQ(MessagesError(json::parse(R"([{"role": "assistant", "tool_calls": [{"type": "code"}]}])")),
            "messages[0].tool_calls[0].type: must be 'function'");
  EXPECT_EQ(MessagesError(json::parse(R"([{"role": "assistant", "tool_calls": [{"id": "x"}]}])")),
            "messages[0].tool_calls[0].function: must be an object");
  EXPECT_EQ(MessagesError(json::parse(R"([{"role": "assistant", "content": "", "reasoning_content": 3}])")),
            "messages[0].reasoning_content: must be a string or null");
  EXPECT_EQ(MessagesError(json::parse(R"([{"role": "tool", "content": "x", "tool_call_id": 3}])")),
            "messages[0].tool_call_id: must be a string");
}

TEST(NormalizeMessagesTest, InvalidUtf8IsNamed) {
  json messages = json::array();
  messages.push_back({{"role", "user"}, {"content", "fine"}});
  messages.push_back({{"role", "user"}, {"content", std::string("bad \xC3\x28 byte")}});
  EXPECT_EQ(MessagesError(messages), "messages[1].content: invalid UTF-8");

  json parts = json::array();
  parts.push_back({{"role", "user"},
                   {"content", json::array({{{"type", "text"}, {"text", "ok"}},
                                            {{"type", "text"}, {"text", std::string("\xED\xA0\x80")}}})}});
  EXPECT_EQ(MessagesError(parts), "messages[0].content[1].text: invalid UTF-8");

  json args = json::parse(R"([{"role": "assistant", "tool_calls": [{"function": {"name": "f"}}]}])");
  args[0]["tool_calls"][0]["function"]["arguments"] = std::string("{\"a\": \"\xFF\"}");
  EXPECT_EQ(MessagesError(args), "messages[0].tool_calls[0].function.arguments: invalid UTF-8");
}

TEST(Utf8Test, Validation) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("ascii"));
  EXPECT_TRUE(IsValidUtf8("é 中 😀 \xF4\x8F\xBF\xBF"));
  EXPECT_FALSE(IsValidUtf8("\xC0\xAF"));          // overlong
  EXPECT_FALSE(IsValidUtf8("\xE0\x80\xAF"));      // overlong
  EXPECT_FALSE(IsValidUtf8("\xED\xA0\x80"));      // surrogate
  EXPECT_FALSE(IsValidUtf8("\xF4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xE4\xB8"));          // cut short
  EXPECT_FALSE(IsValidUtf8("\x80"));
}

json WeatherTools() {
  return json::parse(R"([
    {"type": "function", "function": {"name": "get_weather", "description": "Weather.",
      "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
    {"type": "function", "function": {"name": "get_time"}}
  ])");
}

TEST(NormalizeToolsTest, AcceptsAndErrors) {
  auto ok = NormalizeTools(WeatherTools());
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(*ok, WeatherTools());
  EXPECT_EQ(*NormalizeTools(json()), json::array());

  EXPECT_EQ(ToolsError(json::object()), "tools: must be an array");
  EXPECT_EQ(ToolsError(json::parse(R"([1])")), "tools[0]: must be an object");
  EXPECT_EQ(ToolsError(json::parse(R"([{"function": {"name": "f"}}])")), "tools[0].type: must be 'function'");
  EXPECT_EQ(ToolsError(json::parse(R"([{"type": "function"}])")), "tools[0].function: must be an object");
  EXPECT_EQ(ToolsError(json::parse(R"([{"type": "function", "function": {"name": "f"}},
                                        {"type": "function", "function": {}}])")),
            "tools[1].function.name: must be a non-empty string");
  EXPECT_EQ(ToolsError(json::parse(R"([{"type": "function", "function": {"name": ""}}])")),
            "tools[0].function.name: must be a non-empty string");
  EXPECT_EQ(ToolsError(json::parse(R"([{"type": "function", "function": {"name": "f"}},
                                        {"type": "function", "function": {"name": "f"}}])")),
            "tools[1].function.name: duplicate tool name 'f'");
  EXPECT_EQ(ToolsError(json::parse(R"([{"type": "function", "function": {"name": "a b"}}])")),
            "tools[0].function.name: 'a b' must not hold whitespace, '<' or '>'");
  EXPECT_EQ(ToolsError(json::parse(R"([{"type": "function", "function": {"name": "f", "parameters": "x"}}])")),
            "tools[0].function.parameters: must be a JSON Schema object");
  EXPECT_EQ(ToolsError(json::parse(R"([{"type": "function", "function": {"name": "f", "description": 1}}])")),
            "tools[0].function.description: must be a string");
  json bad = WeatherTools();
  bad[1]["function"]["description"] = std::string("\xFF");
  EXPECT_EQ(ToolsError(bad), "tools[1].function.description: invalid UTF-8");
}

TEST(ToolChoiceTest, Cases) {
  json tools = WeatherTools();
  auto mode = [&](const json& choice) { return ParseToolChoice(choice, tools)->mode; };
  EXPECT_EQ(mode(json()), ToolChoice::Mode::kAuto);
  EXPECT_EQ(ParseToolChoice(json(), json::array())->mode, ToolChoice::Mode::kNone);
  EXPECT_EQ(mode("auto"), ToolChoice::Mode::kAuto);
  EXPECT_EQ(mode("none"), ToolChoice::Mode::kNone);
  EXPECT_EQ(mode("required"), ToolChoice::Mode::kRequired);
  auto named = ParseToolChoice(json::parse(R"({"type": "function", "function": {"name": "get_time"}})"), tools);
  ASSERT_TRUE(named.ok());
  EXPECT_EQ(named->mode, ToolChoice::Mode::kNamed);
  EXPECT_EQ(named->name, "get_time");

  auto error = [&](const json& choice, const json& t) {
    auto r = ParseToolChoice(choice, t);
    EXPECT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    return std::string(r.status().message());
  };
  EXPECT_EQ(error(json::parse(R"({"type": "function", "function": {"name": "N"}})"), tools),
            "tool_choice: no tool named 'N'");
  EXPECT_EQ(error("required", json::array()), "tool_choice: 'required' needs tools");
  EXPECT_EQ(error(json::parse(R"({"type": "function", "function": {"name": "get_time"}})"), json::array()),
            "tool_choice: names tool 'get_time' but no tools are given");
  EXPECT_EQ(error("sometimes", tools), "tool_choice: unknown value 'sometimes' (auto, none, required or a function)");
  EXPECT_EQ(error(3, tools), "tool_choice: must be 'auto', 'none', 'required' or {\"type\": \"function\", ...}");
  EXPECT_EQ(error(json::parse(R"({"type": "tool", "function": {"name": "get_time"}})"), tools),
            "tool_choice.type: must be 'function'");
  EXPECT_EQ(error(json::parse(R"({"type": "function"})"), tools), "tool_choice.function: must be an object");
  EXPECT_EQ(error(json::parse(R"({"type": "function", "function": {}})"), tools),
            "tool_choice.function.name: must be a string");
  // "none" with no tools is fine.
  EXPECT_TRUE(ParseToolChoice("none", json::array()).ok());
  EXPECT_TRUE(ParseToolChoice("auto", json::array()).ok());
}

TEST(ToolChoiceTest, EffectOnRenderingAndParsing) {
  json tools = WeatherTools();
  ToolChoice none{ToolChoice::Mode::kNone, ""};
  ToolChoice autoc{ToolChoice::Mode::kAuto, ""};
  ToolChoice required{ToolChoice::Mode::kRequired, ""};
  ToolChoice named{ToolChoice::Mode::kNamed, "get_time"};
  EXPECT_EQ(ToolsForTemplate(tools, none), json::array());
  EXPECT_EQ(ToolsForTemplate(tools, autoc), tools);
  EXPECT_EQ(ToolsForTemplate(tools, required), tools);
  EXPECT_EQ(ToolsForTemplate(tools, named), json::array({tools[1]}));
  EXPECT_FALSE(ShouldParseToolCalls(tools, none));
  EXPECT_TRUE(ShouldParseToolCalls(tools, autoc));
  EXPECT_TRUE(ShouldParseToolCalls(tools, required));
  EXPECT_TRUE(ShouldParseToolCalls(tools, named));
  EXPECT_FALSE(ShouldParseToolCalls(json::array(), autoc));
}

}  // namespace
}  // namespace stepserve::text
