// The added tokens of tokenizer.json, matched in the input before pre-tokenization as the tokenizers crate
// does: leftmost-longest over the non-normalized tokens in the raw text, then over the normalized ones in
// each normalized piece; single_word, lstrip and rstrip adjust or discard a match.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "text/tokenizer/function_ref.h"

namespace stepserve::text {

class Normalizer;

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
  bool special = false;
};

// Called for each piece in order: `id` is the added token's, or -1 for text between tokens. `offset` is
// the piece's start in the text split.
using AddedSplitSink = FunctionRef<void(std::string_view piece, int32_t id, size_t offset)>;

class AddedVocabulary {
 public:
  AddedVocabulary() = default;
  // `normalizer` (may be null) gives the normalized tokens the form they are matched in.
  static absl::StatusOr<AddedVocabulary> FromJson(const nlohmann::json& added_tokens, std::string_view path,
                                                  const Normalizer* normalizer);

  // Splits on the tokens with normalized=false (raw text) or normalized=true (normalized text).
  void SplitRaw(std::string_view text, AddedSplitSink sink) const { Split(raw_, text, sink); }
  void SplitNormalized(std::string_view text, AddedSplitSink sink) const { Split(normalized_, text, sink); }

  const AddedToken* ById(int32_t id) const;
  std::optional<int32_t> IdOf(std::string_view content) const;
  bool IsSpecialContent(std::string_view content) const { return special_contents_.contains(absl::string_view(content.data(), content.size())); }
  const std::vector<AddedToken>& tokens() const { return tokens_; }
  int32_t max_id() const { return max_id_; }

 private:
  // A byte trie matched leftmost-longest.
  struct Matcher {
    struct Node {
      int32_t token = -1;  // index into tokens_
    };
    std::vector<Node> nodes;  // nodes[0] is the root
    absl::flat_hash_map<uint64_t, int32_t> edges;  // (node << 8 | byte) -> child
    bool first_byte[256] = {};
    bool empty() const { return nodes.size() <= 1; }
    void Add(std::string_view pattern, int32_t token);
  };
  void Split(const Matcher& m, std::string_view text, AddedSplitSink sink) const;

  std::vector<AddedToken> tokens_;
  Matcher raw_, normalized_;
  absl::flat_hash_map<int32_t, size_t> by_id_;
  absl::flat_hash_map<std::string, int32_t> by_content_;
  absl::flat_hash_set<std::string> special_contents_;
  int32_t max_id_ = -1;
};

}  // namespace stepserve::text
