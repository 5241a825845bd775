// Streaming tool-call parser for Step-3.5-Flash output (vLLM's `step3p5` tool parser; SGLang maps
// `step3p5` to its Qwen3-Coder detector, the same format). It reads the content channel (after the
// reasoning parser), where a call is
//   <tool_call>\n<function=NAME>\n<parameter=P>\nVALUE\n</parameter>\n...</function>\n</tool_call>
// with any number of parameters and any number of calls.
//
// Semantics:
//   - Text outside <tool_call> blocks is content, verbatim, except that a stretch of text that is only
//     whitespace and borders a block (before the first, between two, after the last) is dropped - the
//     newlines the model puts around its calls (vLLM drops whitespace-only text between calls too). With
//     no block at all the content is exactly the input.
//   - A call's name is streamed as soon as "<function=NAME>" is complete (one delta: index, id, name,
//     arguments ""); its arguments as one JSON-object fragment when "</function>" (or "</tool_call>")
//     closes it. Concatenating a call's argument fragments always gives a JSON object. Ids are
//     "call_" + 24 random alphanumerics unless Options::make_id says otherwise.
//   - Parameter values are the text between "<parameter=P>" and the first of "</parameter>", the next
//     "<parameter=", "</function>" or "</tool_call>" (Qwen3-Coder's tolerance of a missing
//     "</parameter>"), minus one leading and one trailing "\n"; typed by the tool's schema as
//     tool_param_types.h says. Text between parameters is ignored; a repeated parameter keeps the last.
//   - A function name not among the tools is still reported (vLLM does the same; SGLang drops it unless
//     told to forward unknown tools): the caller can answer with an error tool message.
//   - "<tool_call>" not followed by "<function=NAME>" (after whitespace) is not a call: the text, tag
//     included, is content. A "<tool_call>" that never gets its "<function=NAME>" before the end of
//     generation is content too (nothing is lost).
//   - A call cut off after its name was streamed (max_tokens) is closed at Finish with the parameters read
//     so far - the one being read included, with the text it had - and reported with truncated = true, so
//     that the streamed deltas and the final list agree. A missing "</tool_call>" after "</function>" is
//     not a truncation.
//   - Feed never returns content that ends in part of "<tool_call>"; it holds that tail back (and a
//     whitespace-only stretch that may yet border a block). Finish releases it.
// Splitting the text differently never changes the concatenated content, the calls, or their arguments.
#ifndef STEPSERVE_TEXT_PARSERS_TOOL_CALL_PARSER_H_
#define STEPSERVE_TEXT_PARSERS_TOOL_CALL_PARSER_H_

#include <cstddef>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace stepserve::text {

// One complete call, for a non-streaming response. `arguments` is a JSON object in text form.
struct ToolCall {
  std::string id;
  std::string name;
  std::string arguments;
  bool truncated = false;  // closed at Finish: generation stopped inside the call
};

// One OpenAI streaming tool_calls[] entry. The first delta of a call carries id, name (type "function")
// and empty arguments; later ones carry the same index and id and an arguments fragment.
struct ToolCallDelta {
  int index = 0;
  std::string id;
  std::optional<std::string> name;
  std::string arguments;
};

class ToolCallParser {
 public:
  static constexpr std::string_view kCallStart = "<tool_call>";
  static constexpr std::string_view kCallEnd = "</tool_call>";
  static constexpr std::string_view kFunctionStart = "<function=";
  static constexpr std::string_view kFunctionEnd = "</function>";
  static constexpr std::string_view kParameterStart = "<parameter=";
  static constexpr std::string_view kParameterEnd = "</parameter>";

  struct Options {
    // Id of the call with the given index; default "call_" + 24 random alphanumerics.
    std::function<std::string(int index)> make_id;
  };

  // `tools`: the request's OpenAI tools array (as NormalizeTools returns it), used for typing values.
  explicit ToolCallParser(nlohmann::json tools = nlohmann::json::array(), Options options = {});

  struct Delta {
    std::string content;
    std::vector<ToolCallDelta> tool_calls;  // several entries of one index are merged into one
  };
  struct Final {
    Delta delta;                      // what Finish releases, for a stream
    std::string content;              // all content, as a non-streaming response shows it
    std::vector<ToolCall> tool_calls;  // all calls, in order
  };

  Delta Feed(std::string_view content_delta);
  // End of generation. Feed must not be called afterwards.
  Final Finish();

  // Calls whose name has been streamed so far.
  int num_calls_started() const { return next_index_; }

 private:
  enum class Mode { kText, kCall };
  enum class CallState { kExpectFunction, kInFunction, kInParam, kExpectCallEnd };

  void Process(Delta& out, bool final);
  // Each returns false when it needs more input.
  bool ProcessText(Delta& out, bool final);
  bool ProcessCall(Delta& out);
  void EmitText(std::string_view text, Delta& out);
  void EndSegmentBeforeBlock();
  void StartFunction(std::string name, Delta& out);
  void AddParameter(std::string_view raw_value);
  void CloseFunction(Delta& out, bool truncated);
  void Malformed(Delta& out);
  void SkipWhitespace();
  void PushToolDelta(Delta& out, ToolCallDelta delta);
  void Compact();
  std::string MakeId(int index);

  nlohmann::json tools_;
  Options options_;
  std::mt19937_64 rng_;

  std::string buf_;      // received and not yet consumed; offsets below index it
  std::size_t pos_ = 0;  // where scanning resumes
  Mode mode_ = Mode::kText;

  // Content segments (text between blocks).
  bool segment_has_text_ = false;  // the current segment has shown a non-whitespace character
  std::string held_whitespace_;    // the current segment's text while it is whitespace only
  bool any_call_ = false;
  std::string all_content_;

  // The call being read.
  CallState call_state_ = CallState::kExpectFunction;
  std::size_t call_start_ = 0;    // offset just after "<tool_call>"
  std::size_t value_start_ = 0;   // offset of the current parameter's value
  std::size_t search_from_ = 0;   // where to look for the end of that value
  bool function_closed_ = false;
  int index_ = -1;
  int next_index_ = 0;
  std::string id_;
  std::string name_;
  std::string param_name_;
  nlohmann::ordered_json args_;
  std::vector<ToolCall> calls_;
};

}  // namespace stepserve::text

#endif  // STEPSERVE_TEXT_PARSERS_TOOL_CALL_PARSER_H_
