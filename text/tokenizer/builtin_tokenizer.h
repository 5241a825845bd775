// A deterministic byte-level BPE tokenizer for the model presets (no download). Ids: 0 "<unk>",
// 1 "<|begin_of_sentence|>" (BOS), 2 "<|end_of_sentence|>" (EOS), 3-8 the Step special tokens
// "<|im_start|>", "<|im_end|>", "<think>", "</think>", "<tool_call>", "</tool_call>", 9-264 the 256
// byte-level symbols (byte b is id 9 + b), then merges: first those learnt by greedy pair counting over a
// fixed built-in English and code text, then, when that text has no pair left to merge, each existing
// token extended by one byte in id order, until vocab_size is filled. GPT-2's pre-tokenizer, BOS added by
// add_special_tokens, ByteLevel decoder.
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "text/tokenizer/tokenizer.h"

namespace stepserve::text {

// The first vocab id after the special tokens and the 256 byte symbols: the smallest vocab_size.
inline constexpr int32_t kBuiltinMinVocabSize = 265;

// The tokenizer.json document (vocab_size is raised to kBuiltinMinVocabSize when smaller).
nlohmann::json BuiltinTokenizerJson(int32_t vocab_size);
// Its tokenizer_config.json: bos_token and eos_token.
nlohmann::json BuiltinTokenizerConfigJson();
// Both, loaded through Tokenizer::FromJson. INVALID_ARGUMENT when vocab_size < kBuiltinMinVocabSize.
absl::StatusOr<std::shared_ptr<const Tokenizer>> BuiltinTokenizer(int32_t vocab_size);

}  // namespace stepserve::text
