// From an OpenAI chat-completions request's JSON pieces to what the Step-3.5-Flash chat template
// renders, with INVALID_ARGUMENT errors that name the offending field ("messages[3].role: ...").
//
// Choices (vLLM's behaviour in parentheses where it differs or matters):
//   - Roles: system, developer, user, assistant, tool. "developer" is passed through as is (the template
//     decides what to make of it). Anything else is an error.
//   - content: a string; or an array of text parts {"type": "text", "text": ...} (a part without "type"
//     but with "text" is taken as text), FLATTENED to one string joined with "\n" - as vLLM does for
//     templates that take string content, which is how Step-3.5-Flash's template reads content. Other
//     part types (image_url, input_audio, ...) are errors: the model is text-only. null or missing
//     content is allowed for assistant messages only and becomes "" (Jinja would print None).
//   - assistant tool_calls[]: {"id"?, "type"?: "function", "function": {"name", "arguments"}}; arguments
//     given as a JSON string are parsed (the template iterates them as a mapping; vLLM does the same); the
//     result must be a JSON object. An empty string is taken as {} (clients send it for no-argument
//     calls; vLLM would fail on it).
//   - reasoning_content / reasoning (string or null) are kept; when only one is given the other is set
//     to the same text, so a template can read either. Other keys of a message (name, tool_call_id, ...)
//     are passed through unchanged; a tool message needs neither tool_call_id nor name (vLLM is as
//     lenient).
//   - Every string anywhere in messages and tools must be valid UTF-8.
//   - tools: each {"type": "function", "function": {"name", "description"?, "parameters"?, "strict"?}}.
//     Names must be non-empty, unique, and free of whitespace, '<' and '>' (they are written into and
//     read back from "<function=NAME>"); parameters, when given, must be an object. null tools = [].
//
// tool_choice and its effect (see ToolsForTemplate / ShouldParseToolCalls below):
//   - "none": tools are not rendered (vLLM's exclude_tools_when_tool_choice_none) and the output is not
//     parsed for tool calls.
//   - "auto" (the default when tools are given; "none" when not): all tools rendered, output parsed.
//   - "required" / {"type": "function", "function": {"name": N}}: stepserve cannot constrain decoding, so
//     it only parses (as vLLM does without guided decoding); it adds no instruction to the prompt. For a
//     named choice only that tool is rendered, so the model is not offered others; whether a call was
//     made is not enforced (the response may carry no tool call).
#ifndef STEPSERVE_TEXT_PARSERS_CHAT_REQUEST_H_
#define STEPSERVE_TEXT_PARSERS_CHAT_REQUEST_H_

#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"

namespace stepserve::text {

// The messages as the chat template takes them (rules above).
absl::StatusOr<nlohmann::json> NormalizeMessages(const nlohmann::json& messages);

// The tools array, validated (rules above); null gives [].
absl::StatusOr<nlohmann::json> NormalizeTools(const nlohmann::json& tools);

struct ToolChoice {
  enum class Mode { kAuto, kNone, kRequired, kNamed };
  Mode mode = Mode::kAuto;
  std::string name;  // kNamed only
};

// `tool_choice` as the request gives it (null/absent: auto when `tools` is non-empty, else none), checked
// against the normalized `tools`.
absl::StatusOr<ToolChoice> ParseToolChoice(const nlohmann::json& tool_choice, const nlohmann::json& tools);

// The tools to render into the prompt for this choice: none for kNone, the named one for kNamed, all
// otherwise.
nlohmann::json ToolsForTemplate(const nlohmann::json& tools, const ToolChoice& choice);

// Whether the output should go through the tool-call parser.
bool ShouldParseToolCalls(const nlohmann::json& tools, const ToolChoice& choice);

// Whether `text` is valid UTF-8 (no overlongs, surrogates or code points above U+10FFFF).
bool IsValidUtf8(std::string_view text);

}  // namespace stepserve::text

#endif  // STEPSERVE_TEXT_PARSERS_CHAT_REQUEST_H_
