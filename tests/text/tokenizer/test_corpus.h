// Deterministic test text for the tokenizer tests: English, code, CJK, emoji, combining marks and
// NFC/NFKC-sensitive characters, digits, whitespace runs (\r\n, tabs, NBSP), special tokens inside text,
// and 100 KB inputs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace stepserve::text::testing {

// `special_tokens`: contents to sprinkle into the text (a model's added tokens).
std::vector<std::string> TokenizerCorpus(const std::vector<std::string>& special_tokens, uint32_t seed);

// A random mix of the corpus fragments, about `bytes` long.
std::string MixedText(size_t bytes, uint32_t seed);

}  // namespace stepserve::text::testing
