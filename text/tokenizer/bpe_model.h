// The BPE model of tokenizer.json: merges by rank ("a b" strings or [a, b] pairs), ignore_merges,
// byte_fallback, unk_token (fuse_unk), continuing_subword_prefix, end_of_word_suffix, and a thread-safe
// cache of word pieces. With a ByteLevel pre-tokenizer the model takes each piece's raw bytes and maps them
// through a 256-entry table of initial symbol ids (no byte-level string is built).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace stepserve::text {

class BpeModel {
 public:
  // `byte_level`: pieces arrive as raw bytes (the pre-tokenizer chain ends in ByteLevel).
  static absl::StatusOr<std::unique_ptr<BpeModel>> FromJson(const nlohmann::json& model, std::string_view path,
                                                            bool byte_level);
  ~BpeModel();

  // Appends the ids of one non-empty piece.
  void Tokenize(std::string_view piece, std::vector<int32_t>* ids) const;

  std::optional<int32_t> TokenToId(std::string_view token) const;
  // nullptr when no vocabulary entry has this id.
  const std::string* IdToToken(int32_t id) const;
  // -1 for an empty vocabulary.
  int32_t max_id() const { return static_cast<int32_t>(id_to_token_.size()) - 1; }

 private:
  struct Merge {
    int32_t rank;
    int32_t new_id;
  };
  struct CacheShard;
  static constexpr size_t kCacheShards = 64;
  static constexpr size_t kCacheEntriesPerShard = 4096;
  static constexpr size_t kMaxCachedPieceBytes = 256;

  BpeModel();
  const Merge* FindMerge(int32_t left, int32_t right) const {
    auto it = merges_.find((static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right));
    return it == merges_.end() ? nullptr : &it->second;
  }
  // The initial symbols of a piece (HF's merge_word before merging).
  void InitialSymbols(std::string_view piece, std::vector<int32_t>* symbols) const;
  void MergeSmall(std::vector<int32_t>* symbols) const;
  void MergeLarge(std::vector<int32_t>* symbols) const;
  void TokenizeUncached(std::string_view piece, std::vector<int32_t>* out) const;

  absl::flat_hash_map<std::string, int32_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::vector<bool> has_id_;
  absl::flat_hash_map<uint64_t, Merge> merges_;
  // ignore_merges: whole pieces found directly (for byte level, keyed by the tokens' raw bytes).
  bool ignore_merges_ = false;
  absl::flat_hash_map<std::string, int32_t> raw_vocab_;
  bool byte_level_ = false;
  int32_t byte_ids_[256];  // byte level, no prefix/suffix: each byte's symbol id, -1 when absent
  bool fast_bytes_ = false;
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
  std::optional<int32_t> unk_id_;
  std::string prefix_, suffix_;
  std::unique_ptr<CacheShard[]> cache_;
};

}  // namespace stepserve::text
