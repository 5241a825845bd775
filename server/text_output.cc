#include "server/text_output.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "text/parsers/chat_request.h"

namespace stepserve::server {
namespace {

// Appends `more` to `calls`, merging an entry into the previous one of the same call.
void AppendToolDeltas(std::vector<text::ToolCallDelta>& calls, std::vector<text::ToolCallDelta>&& more) {
  for (auto& d : more) {
    if (!calls.empty() && calls.back().index == d.index) {
      if (d.name) calls.back().name = std::move(d.name);
      if (calls.back().id.empty()) calls.back().id = std::move(d.id);
      calls.back().arguments += d.arguments;
    } else {
      calls.push_back(std::move(d));
    }
  }
}

bool EndedByStopToken(const GenerationOutput& out) {
  return out.finished && (out.finish_reason == FinishReason::kEos || out.finish_reason == FinishReason::kStopToken);
}

}  // namespace

OutputStage::OutputStage(std::shared_ptr<const text::Tokenizer> tokenizer, OutputStageOptions options)
    : tokenizer_(std::move(tokenizer)), options_(std::move(options)) {
  if (!options_.detokenize || tokenizer_ == nullptr) {
    options_.detokenize = false;
    return;
  }
  if (options_.chat) {
    std::vector<const char*> tags;
    if (options_.chat->parse_reasoning) tags.insert(tags.end(), {"<think>", "</think>"});
    if (options_.chat->parse_tool_calls) tags.insert(tags.end(), {"<tool_call>", "</tool_call>"});
    for (const char* tag : tags) {
      if (auto id = tokenizer_->TokenToId(tag)) keep_special_.insert(*id);
    }
    chat_.emplace(*options_.chat);
  }
  // The detokenizer sees exactly the ids that are shown (special ones filtered here, so that the chat tags
  // survive skip_special_tokens); its context is the prompt's last shown ids.
  std::vector<int32_t> context;
  for (size_t i = options_.prompt.size(); i > 0 && context.size() < 8; --i) {
    const int32_t id = options_.prompt[i - 1];
    if (options_.skip_special_tokens && tokenizer_->IsSpecial(id) && keep_special_.count(id) == 0) continue;
    context.push_back(id);
  }
  std::reverse(context.begin(), context.end());
  detokenizer_ = std::make_unique<text::IncrementalDetokenizer>(tokenizer_, /*skip_special_tokens=*/false, context);
  if (!options_.stop.empty()) matcher_.emplace(options_.stop, options_.include_stop_str_in_output);
}

bool OutputStage::FeedToken(int32_t id, std::string* text) {
  if (options_.skip_special_tokens && tokenizer_->IsSpecial(id) && keep_special_.count(id) == 0) return false;
  std::string delta = detokenizer_->Append(id);
  if (!matcher_) {
    text->append(delta);
    return false;
  }
  text::StopStringMatcher::Result r = matcher_->Feed(delta);
  text->append(r.text);
  if (r.stopped) {
    matched_stop_ = r.matched;
    return true;
  }
  return false;
}

// The end of the text: what the detokenizer and the matcher hold back (unless a stop string already ended
// it), then the chat parser's end. Sets the finish of a tool-calling chat.
void OutputStage::FinishText(TextOutput* result, bool detokenize_rest) {
  std::string& text = result->text;
  if (detokenize_rest) {
    std::string rest = detokenizer_->Flush();
    if (matcher_) {
      text::StopStringMatcher::Result r = matcher_->Feed(rest);
      text += r.text;
      if (r.stopped) {
        stop_matched_ = true;
        matched_stop_ = r.matched;
        result->finish = TextFinish::kStopString;
        result->matched_stop = matched_stop_;
      } else {
        text += matcher_->Finish();
      }
    } else {
      text += rest;
    }
  }
  if (!chat_) return;
  text::ChatOutputParser::Delta d = chat_->Feed(text);
  text::ChatOutputParser::Final f = chat_->Finish();
  result->text = std::move(d.content) + f.delta.content;
  result->reasoning = std::move(d.reasoning) + f.delta.reasoning;
  AppendToolDeltas(result->tool_calls, std::move(d.tool_calls));
  AppendToolDeltas(result->tool_calls, std::move(f.delta.tool_calls));
  bool truncated = false;
  for (const text::ToolCall& call : f.tool_calls) truncated = truncated || call.truncated;
  if (!f.tool_calls.empty()) {
    const FinishReason engine = result->out.finish_reason;
    const bool stopped = result->finish == TextFinish::kStopString || engine == FinishReason::kEos ||
                         engine == FinishReason::kStopToken;
    // A call cut off by max_tokens keeps "length": the truer reason.
    if (stopped || (engine == FinishReason::kLength && !truncated)) result->finish = TextFinish::kToolCalls;
  }
}

std::optional<TextOutput> OutputStage::Process(const GenerationOutput& out, bool* stop_matched) {
  *stop_matched = false;
  if (finished_) return std::nullopt;
  if (stop_matched_) {
    if (!out.finished) return std::nullopt;  // generated after the match, before the cancel took effect
    // The engine's last output after the cancel: the request ended at the stop string.
    finished_ = true;
    TextOutput result;
    result.out = out;
    result.out.token_ids.clear();
    result.out.logprobs.clear();
    result.out.completion_tokens = delivered_tokens_;
    result.finish = TextFinish::kStopString;
    result.matched_stop = matched_stop_;
    FinishText(&result, /*detokenize_rest=*/false);
    return result;
  }
  TextOutput result;
  result.out = out;
  if (out.finished) finished_ = true;
  if (!options_.detokenize) {
    delivered_tokens_ += static_cast<int>(out.token_ids.size());
    return result;
  }
  // The EOS or stop token that ended the request is not part of the text (as vLLM), unless asked.
  const size_t n = out.token_ids.size();
  const size_t shown = EndedByStopToken(out) && n > 0 && !options_.include_stop_str_in_output ? n - 1 : n;
  std::string text;
  for (size_t i = 0; i < shown; ++i) {
    if (FeedToken(out.token_ids[i], &text)) {
      stop_matched_ = true;
      result.out.token_ids.resize(i + 1);
      if (result.out.logprobs.size() > i + 1) result.out.logprobs.resize(i + 1);
      break;
    }
  }
  delivered_tokens_ += static_cast<int>(result.out.token_ids.size());
  result.text = std::move(text);
  if (stop_matched_) {
    *stop_matched = true;
    result.finish = TextFinish::kStopString;  // meaningful on a last output only
    result.matched_stop = matched_stop_;
    if (out.finished) {
      result.out.completion_tokens = delivered_tokens_;
      FinishText(&result, /*detokenize_rest=*/false);
      return result;
    }
    result.finish = TextFinish::kEngine;
    result.matched_stop.clear();
  } else if (out.finished) {
    FinishText(&result, /*detokenize_rest=*/true);
    if (result.finish == TextFinish::kStopString) result.out.completion_tokens = delivered_tokens_;
    return result;
  }
  if (chat_) {
    text::ChatOutputParser::Delta d = chat_->Feed(result.text);
    result.text = std::move(d.content);
    result.reasoning = std::move(d.reasoning);
    result.tool_calls = std::move(d.tool_calls);
  }
  return result;
}

absl::StatusOr<OutputStageOptions> MakeOutputStageOptions(const TextPipeline& text, const PreparedPrompt& prompt,
                                                          std::vector<std::string> stop,
                                                          bool include_stop_str_in_output, bool skip_special_tokens,
                                                          const std::string& stop_field) {
  OutputStageOptions options;
  const TextLimits& limits = text.limits();
  if (stop.size() > static_cast<size_t>(limits.max_stop_strings)) {
    return absl::InvalidArgumentError(absl::StrCat(stop_field, ": ", stop.size(),
                                                   " stop strings, more than --max_stop_strings=",
                                                   limits.max_stop_strings));
  }
  for (size_t i = 0; i < stop.size(); ++i) {
    if (stop[i].size() > static_cast<size_t>(limits.max_stop_string_bytes)) {
      return absl::InvalidArgumentError(absl::StrCat(stop_field, "[", i, "]: ", stop[i].size(),
                                                     " bytes, more than --max_stop_string_bytes=",
                                                     limits.max_stop_string_bytes));
    }
    if (!text::IsValidUtf8(stop[i])) {
      return absl::InvalidArgumentError(absl::StrCat(stop_field, "[", i, "]: is not valid UTF-8"));
    }
    if (!stop[i].empty()) options.stop.push_back(std::move(stop[i]));
  }
  if (!options.stop.empty()) {
    if (absl::Status s = text.RequireTokenizer(stop_field); !s.ok()) return s;
  }
  options.detokenize = prompt.is_text || !options.stop.empty();
  options.skip_special_tokens = skip_special_tokens;
  options.include_stop_str_in_output = include_stop_str_in_output;
  if (prompt.is_chat) options.chat = prompt.chat_output;
  const size_t tail = std::min<size_t>(prompt.ids.size(), 16);
  options.prompt.assign(prompt.ids.end() - tail, prompt.ids.end());
  return options;
}

std::vector<int32_t> OutputStage::EosTokenIds() const {
  if (tokenizer_ == nullptr || !options_.detokenize) return {};
  return tokenizer_->special_tokens().eos_ids;
}

absl::Status StartTextGeneration(Executor* executor, GenerationRequest request, std::shared_ptr<OutputStage> stage,
                                 std::function<void(TextOutput&&)> sink) {
  // A checkpoint whose chat turns end with a token its config.json does not list as EOS (generation_config's
  // eos_token_id, e.g. <|im_end|>) still ends there; ignore_eos turns both off.
  if (!request.stopping.ignore_eos) {
    const std::vector<int>& model_eos = executor->config().eos_token_ids;
    auto& stops = request.stopping.stop_token_ids;
    for (int32_t eos : stage->EosTokenIds()) {
      if (std::find(model_eos.begin(), model_eos.end(), eos) == model_eos.end() &&
          std::find(stops.begin(), stops.end(), eos) == stops.end()) {
        stops.push_back(eos);
      }
    }
  }
  std::string id = request.id;
  return executor->Submit(std::move(request), [executor, id = std::move(id), stage = std::move(stage),
                                               sink = std::move(sink)](const GenerationOutput& out) {
    bool stop_matched = false;
    std::optional<TextOutput> result = stage->Process(out, &stop_matched);
    // Cancel from the callback is allowed: the request leaves the batch before the next step.
    if (stop_matched && !out.finished) executor->Cancel(id);
    if (result) sink(std::move(*result));
  });
}

}  // namespace stepserve::server
