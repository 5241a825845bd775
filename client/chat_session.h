// stepctl chat: the conversation kept between turns, the streamed answer put together from its deltas,
// and the way it is printed (reasoning apart from the content, tool calls as JSON).
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "stepserve/v1/stepserve.pb.h"

namespace stepserve::client {

// OpenAI tools JSON: an array of {"type": "function", "function": {"name", "description", "parameters"}}
// (a bare {"name", ...} function object is taken too), or an object {"tools": [...]}. False with a message
// naming the tool otherwise.
bool ParseToolsJson(const std::string& text, std::vector<v1::Tool>* tools, std::string* error);

// "auto", "none", "required", or the name of a function (which must be among `tools`).
bool ParseToolChoice(const std::string& text, const std::vector<v1::Tool>& tools, v1::ToolChoice* choice,
                     std::string* error);

// The chat_template_kwargs JSON object: `kwargs_json` (a JSON object, or empty) with "reasoning_effort" set
// when `reasoning_effort` is not empty. "" when both are empty.
bool TemplateKwargs(const std::string& kwargs_json, const std::string& reasoning_effort, std::string* out,
                    std::string* error);

// One assistant answer.
struct AssistantTurn {
  std::string content;
  std::string reasoning;
  std::vector<v1::ToolCall> tool_calls;  // arguments: the JSON text put together from the deltas
};

// Puts a streamed answer together: text, reasoning_text, and tool-call deltas merged by their index (the
// first delta of a call brings its id and name, later ones add to its arguments).
class TurnAccumulator {
 public:
  void Add(const v1::GenerateResponse& msg);
  const AssistantTurn& turn() const { return turn_; }
  // The message with the finish reason (usage, timings); empty until it came.
  const v1::GenerateResponse& final_message() const { return final_; }

 private:
  AssistantTurn turn_;
  std::vector<int> indexes_;  // the delta index of each entry of turn_.tool_calls
  v1::GenerateResponse final_;
};

// The conversation: an optional system prompt, then user, assistant and tool messages in order. Assistant
// turns keep their reasoning (reasoning_content) and tool calls, so the chat template sees the whole history.
class ChatSession {
 public:
  // Tools, tool choice and template kwargs sent with every turn.
  explicit ChatSession(v1::ChatInput settings = {}) : settings_(std::move(settings)) {}

  void SetSystem(const std::string& text);
  void AddUser(const std::string& text);
  // Tool calls without an id get "call_N" (N counting over the conversation); returns the turn as kept.
  AssistantTurn AddAssistant(const AssistantTurn& turn);
  // Answers a pending tool call of the last assistant turn. False with a message for an unknown id.
  bool AddToolResult(const std::string& call_id, const std::string& content, std::string* error);
  // Ids of the last assistant turn's tool calls that no tool message answers yet.
  std::vector<std::string> PendingToolCalls() const;
  // Back to the system prompt alone.
  void Reset();

  const std::vector<v1::ChatMessage>& messages() const { return messages_; }
  // The request's chat input: the settings and every message so far.
  v1::ChatInput Input() const;

 private:
  v1::ChatInput settings_;
  std::vector<v1::ChatMessage> messages_;
  int next_call_id_ = 0;
};

// How reasoning is shown: dimmed (ANSI faint), each line prefixed "[reasoning] ", or not at all.
enum class ReasoningDisplay { kDim, kPrefix, kHide };
// "dim", "prefix", "hide"; "auto" is dim on a terminal, prefix otherwise (is_tty). False otherwise.
bool ParseReasoningDisplay(const std::string& text, bool is_tty, ReasoningDisplay* display);

// A tool call as one JSON line: {"id", "name", "arguments"} with the arguments parsed when they are JSON.
std::string ToolCallJson(const v1::ToolCall& call);

// Prints an answer as it streams: reasoning shown apart, then the content; End() finishes the line and
// prints the tool calls, one "[tool_call] {...}" line each.
class ChatPrinter {
 public:
  ChatPrinter(std::ostream& out, ReasoningDisplay display) : out_(out), display_(display) {}
  void Reasoning(const std::string& text);
  void Content(const std::string& text);
  void End(const AssistantTurn& turn);

 private:
  enum class Part { kNone, kReasoning, kContent };
  void LeaveReasoning();

  std::ostream& out_;
  ReasoningDisplay display_;
  Part part_ = Part::kNone;
  bool line_start_ = true;  // the next character starts a line
};

}  // namespace stepserve::client
