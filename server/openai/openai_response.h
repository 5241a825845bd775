// The OpenAI response bodies: chat.completion and text_completion objects, their streamed chunks (as
// server-sent events), usage and log-probabilities, from the text front's processed outputs. Pure
// formatting: no I/O, no executor.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "server/openai/api_error.h"
#include "server/text_output.h"
#include "text/tokenizer/tokenizer.h"

namespace stepserve::server::openai {

using Json = nlohmann::ordered_json;

// What one HTTP request's responses share.
struct ResponseContext {
  std::string id;  // "chatcmpl-..." / "cmpl-..."
  int64_t created = 0;
  std::string model;
  bool chat = false;
  int top_logprobs = 0;
  bool logprobs = false;
  const text::Tokenizer* tokenizer = nullptr;  // token strings of log-probabilities; may be null
};

// One choice, accumulated (non-streaming) from its outputs.
struct ChoiceResult {
  std::string text;  // content (chat) or text
  std::string reasoning;
  std::vector<text::ToolCallDelta> tool_calls;  // merged per index: id, name, whole arguments
  std::vector<int32_t> token_ids;
  std::vector<TokenLogprob> logprobs;
  bool finished = false;
  TextOutput last;  // the last output (finish data)

  void Add(const TextOutput& output);
};

// "stop" (EOS, a stop token or a stop string), "length", "tool_calls"; empty when the request failed.
std::string FinishReasonOf(const TextOutput& last);
// The error a failed request ends with (the engine's finish reason was not a normal one); nullopt if none.
std::optional<ApiError> ErrorOf(const TextOutput& last);
// The matched stop string, or the stop token id, or null (vLLM's "stop_reason").
Json StopReasonOf(const TextOutput& last);

// Token text for log-probabilities: the token decoded alone (special tokens kept), or "token_id:N".
std::string TokenText(const text::Tokenizer* tokenizer, int32_t id);

Json ChatLogprobs(const ResponseContext& ctx, const std::vector<int32_t>& ids, const std::vector<TokenLogprob>& lps);
// `text_offset`: where the first token's text starts in the choice's text.
Json CompletionLogprobs(const ResponseContext& ctx, const std::vector<int32_t>& ids,
                        const std::vector<TokenLogprob>& lps, int64_t text_offset);

struct UsageTotals {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  int64_t cached_tokens = 0;
};
Json UsageJson(const UsageTotals& usage);

// The non-streaming response. `prefix_text[i]`: text shown before choice i's (echo); may be empty.
Json CompletionResponse(const ResponseContext& ctx, const std::vector<ChoiceResult>& choices,
                        const UsageTotals& usage, const std::vector<std::string>& prefix_text);

// Streaming: one "data: {...}\n\n" event per call (empty when the output has nothing to show).
std::string SseEvent(const Json& body);
// The first chunk of a chat choice: role assistant, content "".
Json ChatRoleChunk(const ResponseContext& ctx, int index, bool include_usage);
// A chunk for one output of choice `index`: its text/reasoning/tool-call deltas, log-probabilities and, on
// the last output, the finish reason. nullopt when there is nothing to send.
std::optional<Json> OutputChunk(const ResponseContext& ctx, int index, const TextOutput& output,
                                bool include_usage, const std::string& prefix_text, int64_t* text_offset);
// The usage chunk (stream_options.include_usage): no choices.
Json UsageChunk(const ResponseContext& ctx, const UsageTotals& usage);

}  // namespace stepserve::server::openai
