// The text front's output side for one request, shared by the gRPC and HTTP fronts: engine outputs (token
// ids) -> IncrementalDetokenizer -> StopStringMatcher -> ChatOutputParser (chat: reasoning, content, tool
// calls). Runs on the engine thread inside the executor's callback (a few microseconds per token).
//
// A stop string that matches ends the request at once: StartTextGeneration's callback cancels it in the
// executor from inside the callback (its KV blocks are freed before the next step), drops the outputs the
// engine still delivers, and reports the engine's final output as TextFinish::kStopString.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "absl/status/status.h"
#include "engine/executor.h"
#include "engine/generation.h"
#include "server/text_pipeline.h"
#include "text/parsers/chat_output.h"
#include "text/parsers/stop_string_matcher.h"
#include "text/tokenizer/incremental_detokenizer.h"
#include "text/tokenizer/tokenizer.h"

namespace stepserve::server {

struct OutputStageOptions {
  bool detokenize = false;  // text requests, and token-id requests with stop strings
  bool skip_special_tokens = true;
  std::vector<std::string> stop;  // stop strings (need detokenize)
  bool include_stop_str_in_output = false;
  std::optional<text::ChatOutputOptions> chat;  // chat: parse reasoning and tool calls
  std::vector<int32_t> prompt;  // its last ids give the detokenizer its context
};

// How a request ended, beyond the engine's finish reason.
enum class TextFinish {
  kEngine,      // the engine's finish reason stands
  kStopString,  // a stop string matched (matched_stop)
  kToolCalls,   // chat: the model called tools (the engine stopped at EOS or a stop token)
};

struct TextOutput {
  // The engine's output: token_ids and logprobs cut after the token that completed a stop string; on the
  // last output the finish data (completion_tokens counts the tokens delivered when a stop string matched).
  GenerationOutput out;
  std::string text;       // the text these tokens completed (chat: the content)
  std::string reasoning;  // chat
  std::vector<text::ToolCallDelta> tool_calls;  // chat
  TextFinish finish = TextFinish::kEngine;      // on the last output
  std::string matched_stop;
};

class OutputStage {
 public:
  // `tokenizer` may be null only when options.detokenize is false.
  OutputStage(std::shared_ptr<const text::Tokenizer> tokenizer, OutputStageOptions options);
  // The tokenizer's end-of-sequence ids (tokenizer_config.json's eos_token and generation_config.json's
  // eos_token_id): a text request stops at them too, as Hugging Face's generate does (empty without one).
  std::vector<int32_t> EosTokenIds() const;

  // One engine output. Empty when it is to be dropped (the engine's outputs after a stop string matched, up
  // to its last one). *stop_matched is set when this output completed a stop string: the caller cancels the
  // request in the executor (unless this output was the last).
  std::optional<TextOutput> Process(const GenerationOutput& out, bool* stop_matched);

  bool stopped() const { return stop_matched_; }

 private:
  // Text of one token through detokenizer and stop matcher into `text`; true when a stop string matched.
  bool FeedToken(int32_t id, std::string* text);
  void FinishText(TextOutput* result, bool detokenize_rest);

  std::shared_ptr<const text::Tokenizer> tokenizer_;
  OutputStageOptions options_;
  std::unique_ptr<text::IncrementalDetokenizer> detokenizer_;
  std::optional<text::StopStringMatcher> matcher_;
  std::optional<text::ChatOutputParser> chat_;
  std::unordered_set<int32_t> keep_special_;  // special tokens the chat parsers need to see
  bool stop_matched_ = false;
  bool finished_ = false;
  std::string matched_stop_;
  int delivered_tokens_ = 0;
  bool any_tool_call_ = false;
  bool truncated_tool_call_ = false;
};

// The stage of a prepared prompt: text for text requests (and whenever stop strings are given), chat
// parsing for chat. Stop strings must be valid UTF-8 (INVALID_ARGUMENT naming `stop_field`[i]) and need a
// tokenizer (FAILED_PRECONDITION naming --tokenizer); empty ones are ignored.
absl::StatusOr<OutputStageOptions> MakeOutputStageOptions(const TextPipeline& text, const PreparedPrompt& prompt,
                                                          std::vector<std::string> stop,
                                                          bool include_stop_str_in_output, bool skip_special_tokens,
                                                          const std::string& stop_field);

// Submits `request` with an OutputStage between the executor and `sink`: each processed output goes to
// `sink` (on the engine thread; it must return quickly); a matched stop string cancels the request at once.
// Returns Submit's status (the sink is never called when it fails).
absl::Status StartTextGeneration(Executor* executor, GenerationRequest request, std::shared_ptr<OutputStage> stage,
                                 std::function<void(TextOutput&&)> sink);

}  // namespace stepserve::server
