// stepctl chat's parts: tools and kwargs from the command line, a streamed answer put together, the
// conversation kept between turns (reasoning and tool calls included), and how it is printed.
#include "client/chat_session.h"

#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "client/stepctl_text.h"

namespace stepserve::client {
namespace {

constexpr const char* kTools = R"([
  {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
  {"type": "function", "function": {"name": "now"}}
])";

TEST(ChatToolsTest, ParsesOpenAiToolsJson) {
  std::vector<v1::Tool> tools;
  std::string error;
  ASSERT_TRUE(ParseToolsJson(kTools, &tools, &error)) << error;
  ASSERT_EQ(tools.size(), 2u);
  EXPECT_EQ(tools[0].name(), "get_weather");
  EXPECT_EQ(tools[0].description(), "Weather in a city");
  EXPECT_EQ(nlohmann::json::parse(tools[0].parameters_json())["required"][0], "city");
  EXPECT_EQ(tools[1].name(), "now");
  EXPECT_EQ(tools[1].parameters_json(), "");
  // {"tools": [...]} and bare function objects.
  ASSERT_TRUE(ParseToolsJson(R"({"tools": [{"name": "f", "parameters": {"type": "object"}}]})", &tools, &error))
      << error;
  ASSERT_EQ(tools.size(), 1u);
  EXPECT_EQ(tools[0].name(), "f");

  const std::vector<std::pair<std::string, std::string>> bad = {
      {"{", "the tools are not valid JSON"},
      {"{\"name\": \"f\"}", "the tools must be a JSON array of {\"type\": \"function\", \"function\": {...}}"},
      {"[3]", "tools[0]: not an object"},
      {R"([{"type": "function", "function": {"name": "a"}}, {"type": "retrieval", "function": {"name": "b"}}])",
       "tools[1]: \"type\" must be \"function\""},
      {R"([{"type": "function"}])", "tools[0]: \"function\" must be an object"},
      {R"([{"type": "function", "function": {"description": "x"}}])", "tools[0]: the function needs a non-empty \"name\""},
      {R"([{"type": "function", "function": {"name": "a", "parameters": "x"}}])",
       "tools[0]: \"parameters\" of a must be a JSON schema object"},
  };
  for (const auto& [text, expected] : bad) {
    EXPECT_FALSE(ParseToolsJson(text, &tools, &error)) << text;
    EXPECT_EQ(error, expected) << text;
  }
}

TEST(ChatToolsTest, ToolChoiceAndTemplateKwargs) {
  std::vector<v1::Tool> tools;
  std::string error;
  ASSERT_TRUE(ParseToolsJson(kTools, &tools, &error));
  v1::ToolChoice choice;
  for (const char* mode : {"auto", "none", "required"}) {
    ASSERT_TRUE(ParseToolChoice(mode, tools, &choice, &error));
    EXPECT_EQ(choice.mode(), mode);
  }
  ASSERT_TRUE(ParseToolChoice("now", tools, &choice, &error));
  EXPECT_EQ(choice.function_name(), "now");
  EXPECT_FALSE(ParseToolChoice("nope", tools, &choice, &error));
  EXPECT_NE(error.find("\"nope\""), std::string::npos) << error;

  std::string kwargs;
  ASSERT_TRUE(TemplateKwargs("", "", &kwargs, &error));
  EXPECT_EQ(kwargs, "");
  ASSERT_TRUE(TemplateKwargs("", "high", &kwargs, &error));
  EXPECT_EQ(nlohmann::json::parse(kwargs), nlohmann::json({{"reasoning_effort", "high"}}));
  ASSERT_TRUE(TemplateKwargs(R"({"enable_thinking": false, "reasoning_effort": "low"})", "medium", &kwargs, &error));
  EXPECT_EQ(nlohmann::json::parse(kwargs),
            nlohmann::json({{"enable_thinking", false}, {"reasoning_effort", "medium"}}));
  EXPECT_FALSE(TemplateKwargs("[1]", "", &kwargs, &error));
  EXPECT_FALSE(TemplateKwargs("{", "", &kwargs, &error));
}

v1::GenerateResponse Delta(const std::string& text, const std::string& reasoning = "") {
  v1::GenerateResponse m;
  m.set_text(text);
  m.set_reasoning_text(reasoning);
  return m;
}

TEST(TurnAccumulatorTest, MergesTextReasoningAndToolCallDeltas) {
  TurnAccumulator acc;
  acc.Add(Delta("", "Let me "));
  acc.Add(Delta("", "check."));
  acc.Add(Delta("Sure"));
  v1::GenerateResponse calls;
  auto* a = calls.add_tool_calls();
  a->set_index(0);
  a->set_id("call_a");
  a->set_name("get_weather");
  a->set_arguments("{\"city\": ");
  auto* b = calls.add_tool_calls();
  b->set_index(1);
  b->set_name("now");
  acc.Add(calls);
  v1::GenerateResponse more;
  auto* a2 = more.add_tool_calls();
  a2->set_index(0);
  a2->set_arguments("\"Paris\"}");
  auto* b2 = more.add_tool_calls();
  b2->set_index(1);
  b2->set_arguments("{}");
  more.set_finish_reason(v1::FINISH_REASON_TOOL_CALLS);
  more.mutable_usage()->set_completion_tokens(9);
  acc.Add(more);

  const AssistantTurn& t = acc.turn();
  EXPECT_EQ(t.reasoning, "Let me check.");
  EXPECT_EQ(t.content, "Sure");
  ASSERT_EQ(t.tool_calls.size(), 2u);
  EXPECT_EQ(t.tool_calls[0].id(), "call_a");
  EXPECT_EQ(t.tool_calls[0].name(), "get_weather");
  EXPECT_EQ(t.tool_calls[0].arguments(), "{\"city\": \"Paris\"}");
  EXPECT_EQ(t.tool_calls[0].type(), "function");
  EXPECT_EQ(t.tool_calls[1].name(), "now");
  EXPECT_EQ(t.tool_calls[1].arguments(), "{}");
  EXPECT_EQ(acc.final_message().finish_reason(), v1::FINISH_REASON_TOOL_CALLS);
  EXPECT_EQ(acc.final_message().usage().completion_tokens(), 9);
}

TEST(ChatSessionTest, KeepsTheConversationWithReasoningAndToolCalls) {
  v1::ChatInput settings;
  v1::Tool* tool = settings.add_tools();
  tool->set_name("get_weather");
  settings.set_chat_template_kwargs_json(R"({"reasoning_effort":"low"})");
  ChatSession s(settings);
  s.SetSystem("Be brief.");
  s.AddUser("Hi");
  AssistantTurn hello;
  hello.content = "Hello!";
  hello.reasoning = "A greeting.";
  s.AddAssistant(hello);
  s.AddUser("Weather in Paris and Rome?");
  AssistantTurn calls;
  calls.reasoning = "Two cities.";
  v1::ToolCall c;
  c.set_name("get_weather");
  c.set_arguments(R"({"city":"Paris"})");
  calls.tool_calls.push_back(c);
  c.set_id("server-id");
  c.set_arguments(R"({"city":"Rome"})");
  calls.tool_calls.push_back(c);
  const AssistantTurn kept = s.AddAssistant(calls);
  EXPECT_EQ(kept.tool_calls[0].id(), "call_0") << "a call without an id gets one";
  EXPECT_EQ(kept.tool_calls[1].id(), "server-id");
  EXPECT_EQ(s.PendingToolCalls(), (std::vector<std::string>{"call_0", "server-id"}));

  std::string error;
  EXPECT_FALSE(s.AddToolResult("call_9", "x", &error));
  EXPECT_NE(error.find("pending: call_0, server-id"), std::string::npos) << error;
  ASSERT_TRUE(s.AddToolResult("server-id", "12 C", &error)) << error;
  EXPECT_EQ(s.PendingToolCalls(), std::vector<std::string>{"call_0"});
  EXPECT_FALSE(s.AddToolResult("server-id", "again", &error)) << "answered already";
  ASSERT_TRUE(s.AddToolResult("call_0", "18 C", &error)) << error;
  EXPECT_TRUE(s.PendingToolCalls().empty());

  const v1::ChatInput in = s.Input();
  ASSERT_EQ(in.messages_size(), 7);
  const std::vector<std::string> roles = {"system", "user", "assistant", "user", "assistant", "tool", "tool"};
  for (int i = 0; i < 7; ++i) EXPECT_EQ(in.messages(i).role(), roles[i]) << i;
  EXPECT_EQ(in.messages(0).content(), "Be brief.");
  EXPECT_EQ(in.messages(2).content(), "Hello!");
  EXPECT_EQ(in.messages(2).reasoning_content(), "A greeting.");
  EXPECT_FALSE(in.messages(4).has_content()) << "a tool-calling turn with no text has null content";
  EXPECT_EQ(in.messages(4).reasoning_content(), "Two cities.");
  ASSERT_EQ(in.messages(4).tool_calls_size(), 2);
  EXPECT_EQ(in.messages(4).tool_calls(0).arguments(), R"({"city":"Paris"})");
  EXPECT_EQ(in.messages(4).tool_calls(0).type(), "function");
  EXPECT_EQ(in.messages(5).tool_call_id(), "server-id");
  EXPECT_EQ(in.messages(5).content(), "12 C");
  ASSERT_EQ(in.tools_size(), 1);
  EXPECT_EQ(in.chat_template_kwargs_json(), R"({"reasoning_effort":"low"})");

  // A later turn's calls are numbered on.
  AssistantTurn next;
  next.tool_calls.push_back(v1::ToolCall());
  EXPECT_EQ(s.AddAssistant(next).tool_calls[0].id(), "call_2");

  s.Reset();
  ASSERT_EQ(s.messages().size(), 1u);
  EXPECT_EQ(s.messages()[0].role(), "system");
  EXPECT_TRUE(s.PendingToolCalls().empty());
  s.SetSystem("Be verbose.");
  ASSERT_EQ(s.messages().size(), 1u) << "the system prompt is replaced, not repeated";
  EXPECT_EQ(s.messages()[0].content(), "Be verbose.");
}

TEST(ChatPrinterTest, ReasoningPrefixedDimmedOrHidden) {
  AssistantTurn turn;
  v1::ToolCall call;
  call.set_id("call_0");
  call.set_name("get_weather");
  call.set_arguments(R"({"city": "Paris"})");
  turn.tool_calls.push_back(call);

  std::ostringstream prefixed;
  ChatPrinter p(prefixed, ReasoningDisplay::kPrefix);
  p.Reasoning("Thinking");
  p.Reasoning(" hard\nstill");
  p.Content("Answer");
  p.Content(" here");
  p.End(turn);
  EXPECT_EQ(prefixed.str(),
            "[reasoning] Thinking hard\n[reasoning] still\nAnswer here\n"
            "[tool_call] {\"arguments\":{\"city\":\"Paris\"},\"id\":\"call_0\",\"name\":\"get_weather\"}\n");

  std::ostringstream dimmed;
  ChatPrinter d(dimmed, ReasoningDisplay::kDim);
  d.Reasoning("Thinking\n");
  d.Content("Answer");
  d.End(AssistantTurn{});
  EXPECT_EQ(dimmed.str(), "\x1b[2mThinking\n\x1b[0mAnswer\n");

  std::ostringstream hidden;
  ChatPrinter h(hidden, ReasoningDisplay::kHide);
  h.Reasoning("secret");
  h.Content("Answer");
  h.End(AssistantTurn{});
  EXPECT_EQ(hidden.str(), "Answer\n");

  // Only reasoning (the answer was cut): the line is ended.
  std::ostringstream cut;
  ChatPrinter c(cut, ReasoningDisplay::kPrefix);
  c.Reasoning("half a th");
  c.End(AssistantTurn{});
  EXPECT_EQ(cut.str(), "[reasoning] half a th\n");

  ReasoningDisplay display;
  ASSERT_TRUE(ParseReasoningDisplay("auto", true, &display));
  EXPECT_EQ(display, ReasoningDisplay::kDim);
  ASSERT_TRUE(ParseReasoningDisplay("auto", false, &display));
  EXPECT_EQ(display, ReasoningDisplay::kPrefix);
  ASSERT_TRUE(ParseReasoningDisplay("hide", true, &display));
  EXPECT_EQ(display, ReasoningDisplay::kHide);
  EXPECT_FALSE(ParseReasoningDisplay("loud", true, &display));

  // Arguments that are not JSON stay a string.
  call.set_arguments("{\"city\": ");
  EXPECT_EQ(ToolCallJson(call), R"({"arguments":"{\"city\": ","id":"call_0","name":"get_weather"})");
}

TEST(StopStringsTest, CommaListsEscapesAndRepeats) {
  std::vector<std::string> stops;
  std::string error;
  ASSERT_TRUE(ParseStopStrings({"###,END", "a\\,b", "\\n\\n", "back\\\\slash\\t"}, &stops, &error)) << error;
  EXPECT_EQ(stops, (std::vector<std::string>{"###", "END", "a,b", "\n\n", "back\\slash\t"}));
  ASSERT_TRUE(ParseStopStrings({}, &stops, &error));
  EXPECT_TRUE(stops.empty());
  EXPECT_FALSE(ParseStopStrings({"a,,b"}, &stops, &error));
  EXPECT_NE(error.find("empty stop string"), std::string::npos);
  EXPECT_FALSE(ParseStopStrings({""}, &stops, &error));
  EXPECT_FALSE(ParseStopStrings({"a\\"}, &stops, &error));
  EXPECT_FALSE(ParseStopStrings({"a\\q"}, &stops, &error));
  EXPECT_NE(error.find("unknown escape \\q"), std::string::npos) << error;
}

}  // namespace
}  // namespace stepserve::client
