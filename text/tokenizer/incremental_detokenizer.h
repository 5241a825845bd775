// Streaming detokenization for one request: the text delta of each generated token.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/types/span.h"
#include "text/tokenizer/tokenizer.h"

namespace stepserve::text {

class DecodeStream;

class IncrementalDetokenizer {
 public:
  // prompt_ids_for_context: the prompt's last few ids are decoded first (their text is not returned), so
  // that context-dependent decoders (Metaspace's first-token rule, a character split across the prompt's
  // end) continue rather than start over.
  IncrementalDetokenizer(std::shared_ptr<const Tokenizer> tokenizer, bool skip_special_tokens,
                         absl::Span<const int32_t> prompt_ids_for_context = {});
  ~IncrementalDetokenizer();
  IncrementalDetokenizer(const IncrementalDetokenizer&) = delete;
  IncrementalDetokenizer& operator=(const IncrementalDetokenizer&) = delete;

  // The text now complete. A character split across tokens is emitted once whole; invalid bytes become
  // U+FFFD exactly where Decode puts them. O(1) amortised per token. Without context, the deltas of
  // Append for ids... plus Flush() equal tokenizer->Decode(ids, skip_special_tokens).
  std::string Append(int32_t id);
  // At the end: whatever is held back (e.g. an incomplete character, as U+FFFD). Afterwards the
  // detokenizer starts over, with no context.
  std::string Flush();

 private:
  std::shared_ptr<const Tokenizer> tokenizer_;
  bool skip_special_tokens_;
  std::unique_ptr<DecodeStream> stream_;
};

}  // namespace stepserve::text
