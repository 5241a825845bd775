#include "server/openai/openai_response.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace stepserve::server::openai {
namespace {

Json NullOr(const std::string& s) { return s.empty() ? Json(nullptr) : Json(s); }

Json BytesOf(const std::string& s) {
  Json bytes = Json::array();
  for (unsigned char c : s) bytes.push_back(static_cast<int>(c));
  return bytes;
}

Json ToolCallJson(const text::ToolCallDelta& d, bool first_delta_shape) {
  Json call = Json::object();
  call["index"] = d.index;
  if (!d.id.empty()) call["id"] = d.id;
  if (d.name || first_delta_shape) call["type"] = "function";
  Json fn = Json::object();
  if (d.name) fn["name"] = *d.name;
  fn["arguments"] = d.arguments;
  call["function"] = std::move(fn);
  return call;
}

Json BaseChunk(const ResponseContext& ctx, bool include_usage) {
  Json chunk = Json::object();
  chunk["id"] = ctx.id;
  chunk["object"] = ctx.chat ? "chat.completion.chunk" : "text_completion";
  chunk["created"] = ctx.created;
  chunk["model"] = ctx.model;
  chunk["choices"] = Json::array();
  if (include_usage) chunk["usage"] = nullptr;
  return chunk;
}

}  // namespace

void ChoiceResult::Add(const TextOutput& output) {
  text += output.text;
  reasoning += output.reasoning;
  for (const text::ToolCallDelta& d : output.tool_calls) {
    auto it = std::find_if(tool_calls.begin(), tool_calls.end(),
                           [&](const text::ToolCallDelta& c) { return c.index == d.index; });
    if (it == tool_calls.end()) {
      tool_calls.push_back(d);
    } else {
      if (d.name) it->name = d.name;
      if (it->id.empty()) it->id = d.id;
      it->arguments += d.arguments;
    }
  }
  token_ids.insert(token_ids.end(), output.out.token_ids.begin(), output.out.token_ids.end());
  logprobs.insert(logprobs.end(), output.out.logprobs.begin(), output.out.logprobs.end());
  if (output.out.finished) {
    finished = true;
    last = output;
  }
}

std::string FinishReasonOf(const TextOutput& last) {
  switch (last.finish) {
    case TextFinish::kStopString: return "stop";
    case TextFinish::kToolCalls: return "tool_calls";
    case TextFinish::kEngine: break;
  }
  switch (last.out.finish_reason) {
    case FinishReason::kEos:
    case FinishReason::kStopToken: return "stop";
    case FinishReason::kLength: return "length";
    default: return "";
  }
}

std::optional<ApiError> ErrorOf(const TextOutput& last) {
  if (!FinishReasonOf(last).empty()) return std::nullopt;
  switch (last.out.finish_reason) {
    case FinishReason::kAborted:
      return FromStatus(absl::UnavailableError("request aborted: the server shut down before it finished"));
    case FinishReason::kCancelled:
      return FromStatus(absl::CancelledError("request cancelled"));
    case FinishReason::kDeadlineExceeded:
      return FromStatus(absl::DeadlineExceededError("the request's deadline passed"));
    case FinishReason::kError:
      if (last.out.error.code() == absl::StatusCode::kUnavailable) return FromStatus(last.out.error);
      return FromStatus(absl::InternalError(last.out.error.ok() ? std::string("the engine step carrying this request failed")
                                                                : std::string(last.out.error.message())));
    default:
      return FromStatus(absl::InternalError("the request finished without a finish reason"));
  }
}

Json StopReasonOf(const TextOutput& last) {
  if (last.finish == TextFinish::kStopString) return last.matched_stop;
  if (last.out.finish_reason == FinishReason::kStopToken && !last.out.token_ids.empty()) {
    return last.out.token_ids.back();
  }
  return nullptr;
}

std::string TokenText(const text::Tokenizer* tokenizer, int32_t id) {
  if (tokenizer == nullptr) return absl::StrCat("token_id:", id);
  const int32_t one[1] = {id};
  return tokenizer->Decode(one, /*skip_special_tokens=*/false);
}

Json ChatLogprobs(const ResponseContext& ctx, const std::vector<int32_t>& ids, const std::vector<TokenLogprob>& lps) {
  Json content = Json::array();
  for (size_t i = 0; i < lps.size() && i < ids.size(); ++i) {
    const std::string token = TokenText(ctx.tokenizer, lps[i].token);
    Json top = Json::array();
    for (size_t k = 0; k < lps[i].top.size() && static_cast<int>(k) < ctx.top_logprobs; ++k) {
      const std::string alt = TokenText(ctx.tokenizer, lps[i].top[k].first);
      top.push_back({{"token", alt}, {"logprob", lps[i].top[k].second}, {"bytes", BytesOf(alt)}});
    }
    content.push_back(
        {{"token", token}, {"logprob", lps[i].logprob}, {"bytes", BytesOf(token)}, {"top_logprobs", std::move(top)}});
  }
  return {{"content", std::move(content)}};
}

Json CompletionLogprobs(const ResponseContext& ctx, const std::vector<int32_t>& ids,
                        const std::vector<TokenLogprob>& lps, int64_t text_offset) {
  Json tokens = Json::array(), token_logprobs = Json::array(), top = Json::array(), offsets = Json::array();
  for (size_t i = 0; i < lps.size() && i < ids.size(); ++i) {
    const std::string token = TokenText(ctx.tokenizer, lps[i].token);
    tokens.push_back(token);
    token_logprobs.push_back(lps[i].logprob);
    Json alts = Json::object();
    for (size_t k = 0; k < lps[i].top.size() && static_cast<int>(k) < ctx.top_logprobs; ++k) {
      alts[TokenText(ctx.tokenizer, lps[i].top[k].first)] = lps[i].top[k].second;
    }
    top.push_back(ctx.top_logprobs > 0 ? std::move(alts) : Json(nullptr));
    offsets.push_back(text_offset);
    text_offset += static_cast<int64_t>(token.size());
  }
  return {{"tokens", std::move(tokens)},
          {"token_logprobs", std::move(token_logprobs)},
          {"top_logprobs", std::move(top)},
          {"text_offset", std::move(offsets)}};
}

Json UsageJson(const UsageTotals& usage) {
  return {{"prompt_tokens", usage.prompt_tokens},
          {"completion_tokens", usage.completion_tokens},
          {"total_tokens", usage.prompt_tokens + usage.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", usage.cached_tokens}}}};
}

Json CompletionResponse(const ResponseContext& ctx, const std::vector<ChoiceResult>& choices,
                        const UsageTotals& usage, const std::vector<std::string>& prefix_text) {
  Json body = Json::object();
  body["id"] = ctx.id;
  body["object"] = ctx.chat ? "chat.completion" : "text_completion";
  body["created"] = ctx.created;
  body["model"] = ctx.model;
  Json out = Json::array();
  for (size_t i = 0; i < choices.size(); ++i) {
    const ChoiceResult& c = choices[i];
    Json choice = Json::object();
    choice["index"] = static_cast<int>(i);
    if (ctx.chat) {
      Json message = Json::object();
      message["role"] = "assistant";
      message["content"] = c.tool_calls.empty() ? Json(c.text) : NullOr(c.text);
      message["reasoning_content"] = NullOr(c.reasoning);
      Json calls = Json::array();
      for (const text::ToolCallDelta& d : c.tool_calls) {
        calls.push_back({{"id", d.id},
                         {"type", "function"},
                         {"function", {{"name", d.name.value_or("")}, {"arguments", d.arguments}}}});
      }
      message["tool_calls"] = std::move(calls);
      choice["message"] = std::move(message);
      choice["logprobs"] = ctx.logprobs ? ChatLogprobs(ctx, c.token_ids, c.logprobs) : Json(nullptr);
    } else {
      const std::string prefix = i < prefix_text.size() ? prefix_text[i] : std::string();
      choice["text"] = prefix + c.text;
      choice["logprobs"] = ctx.logprobs ? CompletionLogprobs(ctx, c.token_ids, c.logprobs,
                                                             static_cast<int64_t>(prefix.size()))
                                        : Json(nullptr);
    }
    choice["finish_reason"] = NullOr(FinishReasonOf(c.last));
    choice["stop_reason"] = StopReasonOf(c.last);
    out.push_back(std::move(choice));
  }
  body["choices"] = std::move(out);
  body["usage"] = UsageJson(usage);
  return body;
}

std::string SseEvent(const Json& body) {
  return absl::StrCat("data: ", body.dump(-1, ' ', false, Json::error_handler_t::replace), "\n\n");
}

Json ChatRoleChunk(const ResponseContext& ctx, int index, bool include_usage) {
  Json chunk = BaseChunk(ctx, include_usage);
  chunk["choices"].push_back(
      {{"index", index}, {"delta", {{"role", "assistant"}, {"content", ""}}}, {"logprobs", nullptr},
       {"finish_reason", nullptr}});
  return chunk;
}

std::optional<Json> OutputChunk(const ResponseContext& ctx, int index, const TextOutput& output, bool include_usage,
                                const std::string& prefix_text, int64_t* text_offset) {
  const bool last = output.out.finished;
  const bool has_logprobs = ctx.logprobs && !output.out.logprobs.empty();
  if (!last && output.text.empty() && output.reasoning.empty() && output.tool_calls.empty() && !has_logprobs &&
      prefix_text.empty()) {
    return std::nullopt;
  }
  Json chunk = BaseChunk(ctx, include_usage);
  Json choice = Json::object();
  choice["index"] = index;
  if (ctx.chat) {
    Json delta = Json::object();
    if (!output.reasoning.empty()) delta["reasoning_content"] = output.reasoning;
    if (!output.text.empty()) delta["content"] = output.text;
    if (!output.tool_calls.empty()) {
      Json calls = Json::array();
      for (const text::ToolCallDelta& d : output.tool_calls) calls.push_back(ToolCallJson(d, d.name.has_value()));
      delta["tool_calls"] = std::move(calls);
    }
    choice["delta"] = std::move(delta);
    choice["logprobs"] = has_logprobs ? ChatLogprobs(ctx, output.out.token_ids, output.out.logprobs) : Json(nullptr);
  } else {
    const std::string text = prefix_text + output.text;
    choice["text"] = text;
    *text_offset += static_cast<int64_t>(prefix_text.size());
    choice["logprobs"] = has_logprobs ? CompletionLogprobs(ctx, output.out.token_ids, output.out.logprobs, *text_offset)
                                      : Json(nullptr);
    *text_offset += static_cast<int64_t>(output.text.size());
  }
  choice["finish_reason"] = last ? NullOr(FinishReasonOf(output)) : Json(nullptr);
  if (last) choice["stop_reason"] = StopReasonOf(output);
  chunk["choices"].push_back(std::move(choice));
  return chunk;
}

Json UsageChunk(const ResponseContext& ctx, const UsageTotals& usage) {
  Json chunk = BaseChunk(ctx, false);
  chunk["usage"] = UsageJson(usage);
  return chunk;
}

}  // namespace stepserve::server::openai
