// The whole output side of a Step-3.5-Flash chat completion: the reasoning parser, then the tool-call
// parser on the content channel it yields. Either can be turned off (reasoning off: all text is content;
// tools off - no tools, or tool_choice "none" - : content is not searched for calls).
#ifndef STEPSERVE_TEXT_PARSERS_CHAT_OUTPUT_H_
#define STEPSERVE_TEXT_PARSERS_CHAT_OUTPUT_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "text/parsers/reasoning_parser.h"
#include "text/parsers/tool_call_parser.h"

namespace stepserve::text {

struct ChatOutputOptions {
  bool parse_reasoning = true;
  // Whether the prompt opened "<think>" (the Step-3.5-Flash template does whenever it adds the
  // generation prompt).
  bool starts_in_reasoning = true;
  bool parse_tool_calls = true;
  nlohmann::json tools = nlohmann::json::array();  // normalized; types the parameter values
  ToolCallParser::Options tool_call_options;
};

class ChatOutputParser {
 public:
  explicit ChatOutputParser(ChatOutputOptions options = {});

  struct Delta {
    std::string reasoning;
    std::string content;
    std::vector<ToolCallDelta> tool_calls;
    bool empty() const { return reasoning.empty() && content.empty() && tool_calls.empty(); }
  };
  struct Final {
    Delta delta;  // what Finish releases, for a stream
    std::string reasoning;
    std::string content;
    std::vector<ToolCall> tool_calls;
    // "tool_calls" when any call was parsed (vLLM reports that finish reason then). When one of them is
    // truncated the engine's "length" is the truer reason; the caller decides.
    std::optional<std::string> finish_reason_override;
  };

  Delta Feed(std::string_view text_delta);
  // End of generation. Feed must not be called afterwards.
  Final Finish();

 private:
  void FeedContent(std::string_view content, Delta& out);

  ChatOutputOptions options_;
  std::optional<ReasoningParser> reasoning_;
  std::optional<ToolCallParser> tools_;
  std::string all_reasoning_;
  std::string all_content_;  // only when tool parsing is off
};

}  // namespace stepserve::text

#endif  // STEPSERVE_TEXT_PARSERS_CHAT_OUTPUT_H_
