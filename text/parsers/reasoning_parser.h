// Streaming reasoning parser for Step-3.5-Flash output (the `step3p5` reasoning parser of vLLM).
//
// The chat template's generation prompt already opens the reasoning ("<|im_start|>assistant\n<think>\n"),
// so generated text is reasoning until the first "</think>", and content after it. Semantics, matching
// vLLM's Step3p5ReasoningParser (and its non-streaming extract_reasoning):
//   - A "<think>" at the very start of the output (a model that opens the block itself) is dropped. A
//     "<think>" anywhere else is text. (vLLM's non-streaming path partitions on the first "<think>"
//     anywhere, dropping what precedes it; we only drop a leading one, which is what that path is for.)
//   - Exactly one "\n" right before "</think>" is dropped from the reasoning, and exactly one "\n" right
//     after it is dropped from the content (Step3p5 emits "...\n</think>\n...").
//   - Everything after the first "</think>" is content, verbatim ("<think>"/"</think>" there included).
//   - Output that never closes the block is all reasoning; one trailing "\n" of it is dropped (vLLM's
//     non-streaming removesuffix, and its streaming path never releases the held newline either).
//   - With starts_in_reasoning = false (a prompt that did not open <think>), the output is content unless
//     it begins with "<think>", which opens reasoning as above.
// Streaming: Feed never returns part of a tag. It holds back a tail that could still become "</think>"
// (with the newline before it), or, at the start, "<think>"; Finish releases what is held. Concatenating
// every Feed and the Finish delta gives the same reasoning and content however the text was split.
// Empty strings stand for "none" (vLLM reports an empty reasoning or content as null).
#ifndef STEPSERVE_TEXT_PARSERS_REASONING_PARSER_H_
#define STEPSERVE_TEXT_PARSERS_REASONING_PARSER_H_

#include <string>
#include <string_view>

namespace stepserve::text {

class ReasoningParser {
 public:
  static constexpr std::string_view kStartTag = "<think>";
  static constexpr std::string_view kEndTag = "</think>";

  explicit ReasoningParser(bool starts_in_reasoning = true);

  struct Delta {
    std::string reasoning;
    std::string content;
  };

  // Takes the next piece of generated text; returns the reasoning and content that can be shown now.
  Delta Feed(std::string_view text_delta);
  // End of generation: returns whatever was held back. Feed must not be called afterwards.
  Delta Finish();

  // True once "</think>" has been seen (or when the output turned out not to open reasoning at all).
  bool reasoning_ended() const { return state_ == State::kAfterEnd || state_ == State::kContent; }

 private:
  enum class State { kStart, kReasoning, kAfterEnd, kContent };

  bool starts_in_reasoning_;
  State state_ = State::kStart;
  std::string pending_;  // received, not yet returned
};

}  // namespace stepserve::text

#endif  // STEPSERVE_TEXT_PARSERS_REASONING_PARSER_H_
