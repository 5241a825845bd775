#include "text/parsers/chat_output.h"

#include <utility>

namespace stepserve::text {
namespace {

// Appends `calls`, merging an entry into the previous one of the same call.
void AppendToolDeltas(std::vector<ToolCallDelta>& calls, std::vector<ToolCallDelta>&& more) {
  for (auto& d : more) {
    if (!calls.empty() && calls.back().index == d.index) {
      if (d.name) calls.back().name = std::move(d.name);
      calls.back().arguments += d.arguments;
    } else {
      calls.push_back(std::move(d));
    }
  }
}

}  // namespace

ChatOutputParser::ChatOutputParser(ChatOutputOptions options) : options_(std::move(options)) {
  if (options_.parse_reasoning) reasoning_.emplace(options_.starts_in_reasoning);
  if (options_.parse_tool_calls) tools_.emplace(options_.tools, options_.tool_call_options);
}

void ChatOutputParser::FeedContent(std::string_view content, Delta& out) {
  if (!tools_) {
    out.content.append(content);
    all_content_.append(content);
    return;
  }
  if (content.empty()) return;
  ToolCallParser::Delta d = tools_->Feed(content);
  out.content += d.content;
  AppendToolDeltas(out.tool_calls, std::move(d.tool_calls));
}

ChatOutputParser::Delta ChatOutputParser::Feed(std::string_view text_delta) {
  Delta out;
  if (!reasoning_) {
    FeedContent(text_delta, out);
    return out;
  }
  ReasoningParser::Delta r = reasoning_->Feed(text_delta);
  out.reasoning = std::move(r.reasoning);
  all_reasoning_ += out.reasoning;
  FeedContent(r.content, out);
  return out;
}

ChatOutputParser::Final ChatOutputParser::Finish() {
  Final result;
  Delta& out = result.delta;
  if (reasoning_) {
    ReasoningParser::Delta r = reasoning_->Finish();
    out.reasoning = std::move(r.reasoning);
    all_reasoning_ += out.reasoning;
    FeedContent(r.content, out);
  }
  if (tools_) {
    ToolCallParser::Final t = tools_->Finish();
    out.content += t.delta.content;
    AppendToolDeltas(out.tool_calls, std::move(t.delta.tool_calls));
    result.content = std::move(t.content);
    result.tool_calls = std::move(t.tool_calls);
  } else {
    result.content = std::move(all_content_);
  }
  result.reasoning = std::move(all_reasoning_);
  if (!result.tool_calls.empty()) result.finish_reason_override = "tool_calls";
  return result;
}

}  // namespace stepserve::text
