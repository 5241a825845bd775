#include "text/parsers/reasoning_parser.h"

#include <algorithm>

#include "text/parsers/partial_tag.h"

namespace stepserve::text {
namespace {
constexpr std::string_view kNewlineEndTag = "\n</think>";
}  // namespace

ReasoningParser::ReasoningParser(bool starts_in_reasoning) : starts_in_reasoning_(starts_in_reasoning) {}

ReasoningParser::Delta ReasoningParser::Feed(std::string_view text_delta) {
  Delta out;
  pending_.append(text_delta);
  while (true) {
    switch (state_) {
      case State::kStart: {
        if (pending_.empty() || IsProperPrefixOf(pending_, kStartTag)) return out;  // may become <think>
        if (pending_.compare(0, kStartTag.size(), kStartTag) == 0) {
          pending_.erase(0, kStartTag.size());
          state_ = State::kReasoning;
        } else {
          state_ = starts_in_reasoning_ ? State::kReasoning : State::kContent;
        }
        break;
      }
      case State::kReasoning: {
        std::size_t end = pending_.find(kEndTag);
        if (end != std::string::npos) {
          std::size_t reasoning_len = end;
          if (reasoning_len > 0 && pending_[reasoning_len - 1] == '\n') --reasoning_len;
          out.reasoning.append(pending_, 0, reasoning_len);
          pending_.erase(0, end + kEndTag.size());
          state_ = State::kAfterEnd;
          break;
        }
        // Hold back what could still be "</think>", or the newline that would then be dropped with it.
        std::size_t hold =
            std::max(PartialTagSuffix(pending_, kNewlineEndTag), PartialTagSuffix(pending_, kEndTag));
        out.reasoning.append(pending_, 0, pending_.size() - hold);
        pending_.erase(0, pending_.size() - hold);
        return out;
      }
      case State::kAfterEnd: {
        if (pending_.empty()) return out;
        if (pending_.front() == '\n') pending_.erase(0, 1);
        state_ = State::kContent;
        break;
      }
      case State::kContent: {
        out.content.append(pending_);
        pending_.clear();
        return out;
      }
    }
  }
}

ReasoningParser::Delta ReasoningParser::Finish() {
  Delta out;
  switch (state_) {
    case State::kStart:
      (starts_in_reasoning_ ? out.reasoning : out.content) = std::move(pending_);
      break;
    case State::kReasoning:
      // The held tail is a would-be "</think>" that never came; only a lone trailing newline is dropped.
      if (pending_ != "\n") out.reasoning = std::move(pending_);
      break;
    case State::kAfterEnd:
    case State::kContent:
      out.content = std::move(pending_);
      break;
  }
  pending_.clear();
  return out;
}

}  // namespace stepserve::text
