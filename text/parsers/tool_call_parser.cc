#include "text/parsers/tool_call_parser.h"

#include <algorithm>
#include <initializer_list>
#include <utility>

#include "text/parsers/partial_tag.h"
#include "text/parsers/text_util.h"
#include "text/parsers/tool_param_types.h"

namespace stepserve::text {
namespace {

// A "<function=" or "<parameter=" name longer than this without its ">" is not a tag.
constexpr std::size_t kMaxTagName = 512;

bool IsSpace(char c) { return IsAsciiSpace(c); }

bool HasNonSpace(std::string_view text) {
  return std::any_of(text.begin(), text.end(), [](char c) { return !IsSpace(c); });
}

// Whether `rest` is a proper prefix of any of `tags` (so more input could make it one of them).
bool CouldBecome(std::string_view rest, std::initializer_list<std::string_view> tags) {
  for (std::string_view tag : tags) {
    if (IsProperPrefixOf(rest, tag)) return true;
  }
  return false;
}

enum class TagName { kFound, kNeedMore, kInvalid };

// For `rest` starting with `open` ("<function=" or "<parameter="): the name up to ">", trimmed.
TagName ReadTagName(std::string_view rest, std::string_view open, std::string* name, std::size_t* len) {
  std::size_t gt = rest.find('>', open.size());
  std::string_view region = rest.substr(open.size(), gt == std::string_view::npos ? rest.size() : gt - open.size());
  if (region.find_first_of("<\n") != std::string_view::npos || region.size() > kMaxTagName) return TagName::kInvalid;
  if (gt == std::string_view::npos) return TagName::kNeedMore;
  *name = std::string(StripAsciiSpace(region));
  *len = gt + 1;
  return TagName::kFound;
}

}  // namespace

ToolCallParser::ToolCallParser(nlohmann::json tools, Options options)
    : tools_(std::move(tools)), options_(std::move(options)), rng_(std::random_device{}()) {}

std::string ToolCallParser::MakeId(int index) {
  if (options_.make_id) return options_.make_id(index);
  static constexpr char kAlnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::uniform_int_distribution<int> pick(0, sizeof(kAlnum) - 2);
  std::string id = "call_";
  for (int i = 0; i < 24; ++i) id.push_back(kAlnum[pick(rng_)]);
  return id;
}

ToolCallParser::Delta ToolCallParser::Feed(std::string_view content_delta) {
  Delta out;
  buf_.append(content_delta);
  Process(out, /*final=*/false);
  Compact();
  return out;
}

ToolCallParser::Final ToolCallParser::Finish() {
  Final result;
  Delta& out = result.delta;
  Process(out, /*final=*/true);
  while (mode_ == Mode::kCall) {
    switch (call_state_) {
      case CallState::kExpectFunction:
        Malformed(out);  // back to text, "<tool_call>" included
        Process(out, /*final=*/true);
        continue;
      case CallState::kInParam:
        AddParameter(std::string_view(buf_).substr(value_start_));
        CloseFunction(out, /*truncated=*/true);
        break;
      case CallState::kInFunction:
        CloseFunction(out, /*truncated=*/true);
        break;
      case CallState::kExpectCallEnd:
        break;  // complete but for "</tool_call>"
    }
    mode_ = Mode::kText;
  }
  buf_.clear();
  pos_ = 0;
  // A whitespace-only last segment is dropped when it follows a call, kept when there was none.
  if (!segment_has_text_ && !any_call_ && !held_whitespace_.empty()) {
    out.content += held_whitespace_;
    all_content_ += held_whitespace_;
  }
  held_whitespace_.clear();
  result.content = std::move(all_content_);
  result.tool_calls = std::move(calls_);
  return result;
}

void ToolCallParser::Process(Delta& out, bool final) {
  while (mode_ == Mode::kText ? ProcessText(out, final) : ProcessCall(out)) {
  }
}

bool ToolCallParser::ProcessText(Delta& out, bool final) {
  std::string_view rest = std::string_view(buf_).substr(pos_);
  std::size_t start = rest.find(kCallStart);
  if (start != std::string_view::npos) {
    EmitText(rest.substr(0, start), out);
    pos_ += start + kCallStart.size();
    mode_ = Mode::kCall;
    call_state_ = CallState::kExpectFunction;
    call_start_ = pos_;
    return true;
  }
  std::size_t hold = final ? 0 : PartialTagSuffix(rest, kCallStart);
  EmitText(rest.substr(0, rest.size() - hold), out);
  pos_ += rest.size() - hold;
  return false;
}

void ToolCallParser::EmitText(std::string_view text, Delta& out) {
  if (text.empty()) return;
  if (!segment_has_text_) {
    if (!HasNonSpace(text)) {
      held_whitespace_.append(text);
      return;
    }
    segment_has_text_ = true;
    out.content += held_whitespace_;
    all_content_ += held_whitespace_;
    held_whitespace_.clear();
  }
  out.content.append(text);
  all_content_.append(text);
}

void ToolCallParser::EndSegmentBeforeBlock() {
  held_whitespace_.clear();  // a whitespace-only segment next to a block is dropped
  segment_has_text_ = false;
}

void ToolCallParser::SkipWhitespace() {
  while (pos_ < buf_.size() && IsSpace(buf_[pos_])) ++pos_;
}

bool ToolCallParser::ProcessCall(Delta& out) {
  switch (call_state_) {
    case CallState::kExpectFunction: {
      SkipWhitespace();
      std::string_view rest = std::string_view(buf_).substr(pos_);
      if (rest.empty() || IsProperPrefixOf(rest, kFunctionStart)) return false;
      if (StartsWith(rest, kFunctionStart)) {
        std::string name;
        std::size_t len = 0;
        switch (ReadTagName(rest, kFunctionStart, &name, &len)) {
          case TagName::kNeedMore:
            return false;
          case TagName::kFound:
            if (!name.empty()) {
              pos_ += len;
              StartFunction(std::move(name), out);
              call_state_ = CallState::kInFunction;
              return true;
            }
            break;
          case TagName::kInvalid:
            break;
        }
      }
      Malformed(out);
      return true;
    }
    case CallState::kInFunction: {
      SkipWhitespace();
      std::string_view rest = std::string_view(buf_).substr(pos_);
      if (rest.empty()) return false;
      if (StartsWith(rest, kParameterStart)) {
        std::size_t len = 0;
        switch (ReadTagName(rest, kParameterStart, &param_name_, &len)) {
          case TagName::kNeedMore:
            return false;
          case TagName::kFound:
            pos_ += len;
            value_start_ = search_from_ = pos_;
            call_state_ = CallState::kInParam;
            return true;
          case TagName::kInvalid:
            break;  // stray text, skipped below
        }
      } else if (StartsWith(rest, kFunctionEnd)) {
        pos_ += kFunctionEnd.size();
        CloseFunction(out, /*truncated=*/false);
        call_state_ = CallState::kExpectCallEnd;
        return true;
      } else if (StartsWith(rest, kCallEnd)) {
        pos_ += kCallEnd.size();
        CloseFunction(out, /*truncated=*/false);
        mode_ = Mode::kText;
        return true;
      } else if (StartsWith(rest, kCallStart)) {  // the next call began: this one ends here
        CloseFunction(out, /*truncated=*/false);
        mode_ = Mode::kText;
        return true;
      } else if (CouldBecome(rest, {kParameterStart, kFunctionEnd, kCallEnd, kCallStart})) {
        return false;
      }
      // Text between parameters is ignored (vLLM does the same).
      std::size_t next = rest.find('<', 1);
      pos_ += next == std::string_view::npos ? rest.size() : next;
      return true;
    }
    case CallState::kInParam: {
      std::string_view tail = std::string_view(buf_).substr(search_from_);
      std::size_t end = std::string_view::npos;
      std::string_view end_tag;
      for (std::string_view tag : {kParameterEnd, kParameterStart, kFunctionEnd, kCallEnd}) {
        std::size_t at = tail.find(tag);
        if (at < end) {
          end = at;
          end_tag = tag;
        }
      }
      if (end == std::string_view::npos) {
        // None of the end tags contains another, so the earliest complete one found later is the first.
        std::size_t keep = kParameterEnd.size() - 1;
        search_from_ = std::max(value_start_, buf_.size() > keep ? buf_.size() - keep : 0);
        return false;
      }
      end += search_from_;
      AddParameter(std::string_view(buf_).substr(value_start_, end - value_start_));
      pos_ = end + (end_tag == kParameterEnd ? kParameterEnd.size() : 0);
      call_state_ = CallState::kInFunction;
      return true;
    }
    case CallState::kExpectCallEnd: {
      SkipWhitespace();
      std::string_view rest = std::string_view(buf_).substr(pos_);
      if (rest.empty()) return false;
      if (StartsWith(rest, kCallEnd)) {
        pos_ += kCallEnd.size();
        mode_ = Mode::kText;
        return true;
      }
      if (StartsWith(rest, kCallStart)) {  // "</tool_call>" left out
        mode_ = Mode::kText;
        return true;
      }
      if (CouldBecome(rest, {kCallEnd, kCallStart})) return false;
      std::size_t next = rest.find('<', 1);  // ignored, as between parameters
      pos_ += next == std::string_view::npos ? rest.size() : next;
      return true;
    }
  }
  return false;
}

void ToolCallParser::StartFunction(std::string name, Delta& out) {
  EndSegmentBeforeBlock();
  any_call_ = true;
  function_closed_ = false;
  index_ = next_index_++;
  id_ = MakeId(index_);
  name_ = std::move(name);
  args_ = nlohmann::ordered_json::object();
  PushToolDelta(out, ToolCallDelta{index_, id_, name_, ""});
}

void ToolCallParser::AddParameter(std::string_view raw_value) {
  if (param_name_.empty()) return;
  if (StartsWith(raw_value, "\n")) raw_value.remove_prefix(1);
  if (EndsWith(raw_value, "\n")) raw_value.remove_suffix(1);
  args_[param_name_] = ConvertParameterValue(raw_value, FindParameterSchema(tools_, name_, param_name_));
}

void ToolCallParser::CloseFunction(Delta& out, bool truncated) {
  if (function_closed_) return;
  function_closed_ = true;
  std::string arguments = args_.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  PushToolDelta(out, ToolCallDelta{index_, id_, std::nullopt, arguments});
  calls_.push_back(ToolCall{id_, name_, std::move(arguments), truncated});
}

void ToolCallParser::Malformed(Delta& out) {
  // Not a call after all: the tag is content, and the text after it is read again as text.
  EmitText(kCallStart, out);
  pos_ = call_start_;
  mode_ = Mode::kText;
}

void ToolCallParser::PushToolDelta(Delta& out, ToolCallDelta delta) {
  if (!out.tool_calls.empty() && out.tool_calls.back().index == delta.index) {
    ToolCallDelta& last = out.tool_calls.back();
    if (delta.name) last.name = std::move(delta.name);
    last.arguments += delta.arguments;
    return;
  }
  out.tool_calls.push_back(std::move(delta));
}

void ToolCallParser::Compact() {
  std::size_t keep = pos_;
  if (mode_ == Mode::kCall) {
    if (call_state_ == CallState::kExpectFunction) keep = std::min(keep, call_start_);
    if (call_state_ == CallState::kInParam) keep = std::min(keep, value_start_);
  }
  if (keep == 0) return;
  buf_.erase(0, keep);
  pos_ -= keep;
  if (mode_ == Mode::kCall) {
    if (call_state_ == CallState::kExpectFunction) call_start_ -= keep;
    if (call_state_ == CallState::kInParam) {
      value_start_ -= keep;
      search_from_ -= keep;
    }
  }
}

}  // namespace stepserve::text
