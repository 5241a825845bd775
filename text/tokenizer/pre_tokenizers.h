// Pre-tokenizers of tokenizer.json: Split (String or Regex pattern, every behavior, invert), ByteLevel,
// Digits, Metaspace, Whitespace, WhitespaceSplit, Sequence. They run depth first: each piece a step
// produces goes straight on to the next step, so no list of pieces is ever built.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "text/tokenizer/function_ref.h"

namespace stepserve::text {

// A piece and whether it starts at offset 0 of the original input (Metaspace's prepend_scheme "first").
using PieceSink = FunctionRef<void(std::string_view piece, bool at_start)>;

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Splits valid UTF-8 `text` into non-empty pieces, in order.
  virtual void PreTokenize(std::string_view text, bool at_start, PieceSink sink) const = 0;
};

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// The flattened pre-tokenizer of a tokenizer.json.
struct PreTokenizerChain {
  std::vector<std::unique_ptr<PreTokenizer>> steps;
  // The chain ends in ByteLevel: the model sees each piece's bytes through the byte-to-unicode table.
  bool byte_level = false;

  void Run(std::string_view text, bool at_start, PieceSink sink) const { RunFrom(0, text, at_start, sink); }

 private:
  void RunFrom(size_t step, std::string_view text, bool at_start, PieceSink sink) const;
};

// A null pre-tokenizer gives an empty chain. ByteLevel is supported as the last step only.
absl::StatusOr<PreTokenizerChain> PreTokenizerFromJson(const nlohmann::json& j, std::string_view path);

// For tests and the builtin tokenizer: GPT-2's split pattern (ByteLevel's use_regex).
extern const char kGpt2SplitPattern[];

}  // namespace stepserve::text
