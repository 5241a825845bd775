// A Hugging Face-compatible tokenizer (tokenizer.json, with tokenizer_config.json and
// generation_config.json for the special tokens), producing the ids Hugging Face's Rust `tokenizers`
// crate produces (and transformers, for add_special_tokens). Immutable after loading and safe to share
// between threads.
//
// Supported (anything else is a load error naming it and its JSON path):
//   model: BPE (byte-level or not; ignore_merges, byte_fallback, unk_token, fuse_unk,
//          continuing_subword_prefix, end_of_word_suffix; no dropout)
//   normalizer: NFC, NFD, NFKC, NFKD, Lowercase, Replace, Prepend, Strip, StripAccents, Sequence, null
//   pre_tokenizer: Split, ByteLevel (last step), Digits, Metaspace, Whitespace, WhitespaceSplit, Sequence
//   post_processor: TemplateProcessing (single), BertProcessing, RobertaProcessing, ByteLevel, Sequence
//   decoder: ByteLevel, ByteFallback, Fuse, Replace, Strip, Metaspace, Sequence
//   added_tokens: single_word, lstrip, rstrip, normalized, special
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "nlohmann/json.hpp"

namespace stepserve::text {

class AddedVocabulary;
class BpeModel;
class Decoder;
class Normalizer;
struct PostProcessor;
struct PreTokenizerChain;

struct SpecialTokens {
  std::optional<int32_t> bos_id, eos_id;
  std::string bos_token, eos_token;
  // eos_id, then generation_config.json's eos_token_id (an int or a list), without repeats.
  std::vector<int32_t> eos_ids;
};

class Tokenizer {
 public:
  // tokenizer.json (+ tokenizer_config.json and generation_config.json when present) from a directory.
  static absl::StatusOr<std::shared_ptr<const Tokenizer>> FromDirectory(const std::string& dir);
  // tokenizer_config and generation_config may be null.
  static absl::StatusOr<std::shared_ptr<const Tokenizer>> FromJson(const nlohmann::json& tokenizer_json,
                                                                   const nlohmann::json& tokenizer_config,
                                                                   const nlohmann::json& generation_config);
  ~Tokenizer();

  // INVALID_ARGUMENT when `text` is not valid UTF-8. add_special_tokens: what transformers adds (BOS/EOS
  // per tokenizer_config.json's add_bos_token/add_eos_token, else tokenizer.json's post-processor).
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text, bool add_special_tokens) const;
  // As the crate's decode: ids without a token (out of range) are skipped; skip_special_tokens drops the
  // added tokens marked special. Invalid UTF-8 from byte-level tokens becomes U+FFFD.
  std::string Decode(absl::Span<const int32_t> ids, bool skip_special_tokens) const;

  // Highest id + 1 over the vocabulary and the added tokens.
  int32_t vocab_size() const { return vocab_size_; }
  std::optional<int32_t> TokenToId(std::string_view token) const;
  std::optional<std::string> IdToToken(int32_t id) const;
  bool IsSpecial(int32_t id) const;
  const SpecialTokens& special_tokens() const { return special_; }
  // Raw tokenizer_config.json (null when absent), e.g. for its chat_template.
  const nlohmann::json& tokenizer_config() const { return tokenizer_config_; }

 private:
  friend class IncrementalDetokenizer;
  Tokenizer();
  // The string the decoders see for `id`, or nullptr when it is skipped.
  const std::string* TokenForDecode(int32_t id, bool skip_special_tokens) const;
  void EncodeText(std::string_view piece, bool at_start, std::vector<int32_t>* ids) const;

  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizerChain> pre_tokenizer_;
  std::unique_ptr<BpeModel> model_;
  std::unique_ptr<AddedVocabulary> added_;
  std::unique_ptr<PostProcessor> post_processor_;
  std::unique_ptr<Decoder> decoder_;
  SpecialTokens special_;
  nlohmann::json tokenizer_config_;
  int32_t vocab_size_ = 0;
};

}  // namespace stepserve::text
