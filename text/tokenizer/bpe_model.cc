#include "text/tokenizer/bpe_model.h"

#include <algorithm>
#include <climits>
#include <queue>
#include <utility>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "text/tokenizer/byte_level.h"
#include "text/tokenizer/json_path.h"
#include "text/tokenizer/unicode.h"

namespace stepserve::text {

struct BpeModel::CacheShard {
  std::mutex mu;
  absl::flat_hash_map<std::string, std::vector<int32_t>> map;
};

BpeModel::BpeModel() = default;
BpeModel::~BpeModel() = default;

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::FromJson(const nlohmann::json& model, std::string_view path,
                                                             bool byte_level) {
  std::unique_ptr<BpeModel> m(new BpeModel());
  m->byte_level_ = byte_level;
  if (!model.is_object()) return JsonError(path, "expected an object");
  if (model.contains("type") && model["type"] != "BPE") {
    return JsonUnsupported(JsonPathJoin(path, "type"),
                           absl::StrCat("model \"", model["type"].is_string() ? model["type"].get<std::string>() : "?",
                                        "\""));
  }
  if (model.contains("dropout") && !model["dropout"].is_null() &&
      !(model["dropout"].is_number() && model["dropout"].get<double>() == 0.0)) {
    return JsonUnsupported(JsonPathJoin(path, "dropout"), "BPE dropout");
  }
  auto ignore = JsonBool(model, path, "ignore_merges", false);
  if (!ignore.ok()) return ignore.status();
  m->ignore_merges_ = *ignore;
  auto fallback = JsonBool(model, path, "byte_fallback", false);
  if (!fallback.ok()) return fallback.status();
  m->byte_fallback_ = *fallback;
  auto fuse = JsonBool(model, path, "fuse_unk", false);
  if (!fuse.ok()) return fuse.status();
  m->fuse_unk_ = *fuse;
  auto prefix = JsonString(model, path, "continuing_subword_prefix", "");
  if (!prefix.ok()) return prefix.status();
  m->prefix_ = *prefix;
  auto suffix = JsonString(model, path, "end_of_word_suffix", "");
  if (!suffix.ok()) return suffix.status();
  m->suffix_ = *suffix;

  const std::string vocab_path = JsonPathJoin(path, "vocab");
  auto vit = model.find("vocab");
  if (vit == model.end() || !vit->is_object()) return JsonError(vocab_path, "expected an object of token: id");
  m->vocab_.reserve(vit->size());
  int32_t max_id = -1;
  for (auto it = vit->begin(); it != vit->end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 || it.value().get<int64_t>() > INT32_MAX) {
      return JsonError(JsonPathJoin(vocab_path, it.key()), "expected a non-negative 32-bit id");
    }
    const auto id = static_cast<int32_t>(it.value().get<int64_t>());
    m->vocab_[it.key()] = id;
    max_id = std::max(max_id, id);
  }
  m->id_to_token_.resize(static_cast<size_t>(max_id + 1));
  m->has_id_.assign(static_cast<size_t>(max_id + 1), false);
  for (const auto& [token, id] : m->vocab_) {
    m->id_to_token_[id] = token;
    m->has_id_[id] = true;
  }

  auto unk = JsonString(model, path, "unk_token", "");
  if (!unk.ok()) return unk.status();
  if (model.contains("unk_token") && !model["unk_token"].is_null()) {
    auto it = m->vocab_.find(*unk);
    // The crate fails only when an unknown piece needs it; failing at load is the clearer error.
    if (it == m->vocab_.end()) return JsonError(JsonPathJoin(path, "unk_token"), "not in the vocabulary");
    m->unk_id_ = it->second;
  }

  const std::string merges_path = JsonPathJoin(path, "merges");
  auto mit = model.find("merges");
  if (mit == model.end() || !mit->is_array()) return JsonError(merges_path, "expected an array");
  m->merges_.reserve(mit->size());
  for (size_t i = 0; i < mit->size(); ++i) {
    const auto& entry = (*mit)[i];
    std::string a, b;
    if (entry.is_string()) {
      const std::string& s = entry.get_ref<const std::string&>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
        return JsonError(JsonPathIndex(merges_path, i), "a merge string must be two tokens separated by a space");
      }
      a = s.substr(0, space);
      b = s.substr(space + 1);
    } else if (entry.is_array() && entry.size() == 2 && entry[0].is_string() && entry[1].is_string()) {
      a = entry[0].get<std::string>();
      b = entry[1].get<std::string>();
    } else {
      return JsonError(JsonPathIndex(merges_path, i), "expected \"a b\" or [\"a\", \"b\"]");
    }
    auto ia = m->vocab_.find(a);
    auto ib = m->vocab_.find(b);
    if (ia == m->vocab_.end() || ib == m->vocab_.end()) {
      return JsonError(JsonPathIndex(merges_path, i), absl::StrCat("merge token not in the vocabulary: ",
                                                                   ia == m->vocab_.end() ? a : b));
    }
    std::string merged = a;
    merged.append(b, std::min(m->prefix_.size(), b.size()), std::string::npos);
    auto in = m->vocab_.find(merged);
    if (in == m->vocab_.end()) {
      return JsonError(JsonPathIndex(merges_path, i), absl::StrCat("merged token not in the vocabulary: ", merged));
    }
    // As the crate's map built from the list, a repeated pair keeps its last rank.
    m->merges_[(static_cast<uint64_t>(static_cast<uint32_t>(ia->second)) << 32) |
               static_cast<uint32_t>(ib->second)] = Merge{static_cast<int32_t>(i), in->second};
  }

  if (byte_level) {
    const ByteLevelTable& table = GetByteLevelTable();
    m->fast_bytes_ = m->prefix_.empty() && m->suffix_.empty();
    for (int b = 0; b < 256; ++b) {
      auto it = m->vocab_.find(table.byte_to_utf8[b]);
      m->byte_ids_[b] = it == m->vocab_.end() ? -1 : it->second;
      if (it == m->vocab_.end()) m->fast_bytes_ = false;
    }
    if (m->ignore_merges_) {
      std::string raw;
      for (const auto& [token, id] : m->vocab_) {
        raw.clear();
        if (ByteLevelTokenToBytes(token, &raw)) m->raw_vocab_.emplace(raw, id);
      }
    }
  } else {
    std::fill(std::begin(m->byte_ids_), std::end(m->byte_ids_), -1);
  }
  m->cache_.reset(new CacheShard[kCacheShards]);
  return m;
}

std::optional<int32_t> BpeModel::TokenToId(std::string_view token) const {
  auto it = vocab_.find(ToAbsl(token));
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::IdToToken(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size() || !has_id_[id]) return nullptr;
  return &id_to_token_[id];
}

void BpeModel::InitialSymbols(std::string_view piece, std::vector<int32_t>* symbols) const {
  symbols->clear();
  if (fast_bytes_) {
    for (unsigned char b : piece) symbols->push_back(byte_ids_[b]);
    return;
  }
  const ByteLevelTable& table = GetByteLevelTable();
  // The units: raw bytes seen through the byte-level table, or the piece's characters.
  std::string unit;
  std::optional<int32_t> pending_unk;
  size_t i = 0;
  const size_t n = piece.size();
  while (i < n) {
    const size_t start = i;
    if (byte_level_) {
      ++i;
    } else {
      i += Utf8CharLength(static_cast<unsigned char>(piece[i]));
    }
    unit.clear();
    if (start > 0) unit.append(prefix_);
    if (byte_level_) {
      unit.append(table.byte_to_utf8[static_cast<unsigned char>(piece[start])]);
    } else {
      unit.append(piece.data() + start, i - start);
    }
    if (i == n) unit.append(suffix_);
    auto it = vocab_.find(unit);
    if (it != vocab_.end()) {
      if (pending_unk) {
        symbols->push_back(*pending_unk);
        pending_unk.reset();
      }
      symbols->push_back(it->second);
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      const size_t mark = symbols->size();
      for (unsigned char b : unit) {
        auto bit = vocab_.find(absl::StrFormat("<0x%02X>", b));
        if (bit == vocab_.end()) {
          all = false;
          break;
        }
        symbols->push_back(bit->second);
      }
      if (all) {
        // The crate adds these bytes without first adding a pending unknown: it stays pending.
        continue;
      }
      symbols->resize(mark);
    }
    if (unk_id_) {
      if (pending_unk && !fuse_unk_) symbols->push_back(*pending_unk);
      pending_unk = *unk_id_;
    }
    // Without an unk_token, the crate drops the unit.
  }
  if (pending_unk) symbols->push_back(*pending_unk);
}

// Lowest rank first, leftmost among equals: the order of the crate's priority queue.
void BpeModel::MergeSmall(std::vector<int32_t>* symbols) const {
  std::vector<int32_t>& s = *symbols;
  size_t n = s.size();
  if (n < 2) return;
  int32_t ranks[128];
  int32_t new_ids[128];
  for (size_t i = 0; i + 1 < n; ++i) {
    const Merge* m = FindMerge(s[i], s[i + 1]);
    ranks[i] = m ? m->rank : INT32_MAX;
    new_ids[i] = m ? m->new_id : -1;
  }
  while (n > 1) {
    size_t best = 0;
    int32_t best_rank = ranks[0];
    for (size_t i = 1; i + 1 < n; ++i) {
      if (ranks[i] < best_rank) {
        best_rank = ranks[i];
        best = i;
      }
    }
    if (best_rank == INT32_MAX) break;
    s[best] = new_ids[best];
    for (size_t i = best + 1; i + 1 < n; ++i) {
      s[i] = s[i + 1];
      ranks[i] = ranks[i + 1];
      new_ids[i] = new_ids[i + 1];
    }
    --n;
    if (best > 0) {
      const Merge* m = FindMerge(s[best - 1], s[best]);
      ranks[best - 1] = m ? m->rank : INT32_MAX;
      new_ids[best - 1] = m ? m->new_id : -1;
    }
    if (best + 1 < n) {
      const Merge* m = FindMerge(s[best], s[best + 1]);
      ranks[best] = m ? m->rank : INT32_MAX;
      new_ids[best] = m ? m->new_id : -1;
    }
  }
  s.resize(n);
}

// The same order with a heap over a linked list, for long pieces.
void BpeModel::MergeLarge(std::vector<int32_t>* symbols) const {
  std::vector<int32_t>& s = *symbols;
  const size_t n = s.size();
  std::vector<int32_t> prev(n), next(n);
  std::vector<bool> alive(n, true);
  for (size_t i = 0; i < n; ++i) {
    prev[i] = static_cast<int32_t>(i) - 1;
    next[i] = i + 1 < n ? static_cast<int32_t>(i + 1) : -1;
  }
  struct Entry {
    int32_t rank;
    int32_t pos;
    int32_t new_id;
    bool operator>(const Entry& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> queue;
  for (size_t i = 0; i + 1 < n; ++i) {
    if (const Merge* m = FindMerge(s[i], s[i + 1])) queue.push({m->rank, static_cast<int32_t>(i), m->new_id});
  }
  while (!queue.empty()) {
    const Entry top = queue.top();
    queue.pop();
    if (!alive[top.pos] || next[top.pos] < 0) continue;
    const int32_t right = next[top.pos];
    const Merge* m = FindMerge(s[top.pos], s[right]);
    if (m == nullptr || m->new_id != top.new_id) continue;  // stale
    s[top.pos] = top.new_id;
    alive[right] = false;
    next[top.pos] = next[right];
    if (next[right] >= 0) prev[next[right]] = top.pos;
    if (prev[top.pos] >= 0) {
      if (const Merge* pm = FindMerge(s[prev[top.pos]], s[top.pos])) queue.push({pm->rank, prev[top.pos], pm->new_id});
    }
    if (next[top.pos] >= 0) {
      if (const Merge* nm = FindMerge(s[top.pos], s[next[top.pos]])) queue.push({nm->rank, top.pos, nm->new_id});
    }
  }
  size_t w = 0;
  for (size_t i = 0; i < n; ++i) {
    if (alive[i]) s[w++] = s[i];
  }
  s.resize(w);
}

void BpeModel::TokenizeUncached(std::string_view piece, std::vector<int32_t>* out) const {
  out->clear();
  InitialSymbols(piece, out);
  if (out->size() <= 128) {
    MergeSmall(out);
  } else {
    MergeLarge(out);
  }
}

void BpeModel::Tokenize(std::string_view piece, std::vector<int32_t>* ids) const {
  if (ignore_merges_) {
    const auto& whole = byte_level_ ? raw_vocab_ : vocab_;
    auto it = whole.find(ToAbsl(piece));
    if (it != whole.end()) {
      ids->push_back(it->second);
      return;
    }
  }
  if (piece.size() == 1 && fast_bytes_) {
    ids->push_back(byte_ids_[static_cast<unsigned char>(piece[0])]);
    return;
  }
  thread_local std::vector<int32_t> scratch;
  if (piece.size() >= kMaxCachedPieceBytes) {
    TokenizeUncached(piece, &scratch);
    ids->insert(ids->end(), scratch.begin(), scratch.end());
    return;
  }
  const size_t hash = absl::Hash<std::string_view>{}(piece);
  CacheShard& shard = cache_[(hash >> 20) % kCacheShards];
  {
    std::lock_guard<std::mutex> lock(shard.mu);
    auto it = shard.map.find(ToAbsl(piece));
    if (it != shard.map.end()) {
      ids->insert(ids->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  TokenizeUncached(piece, &scratch);
  ids->insert(ids->end(), scratch.begin(), scratch.end());
  std::lock_guard<std::mutex> lock(shard.mu);
  // Bounded: a full shard starts over (a long-running server sees unbounded distinct pieces).
  if (shard.map.size() >= kCacheEntriesPerShard) shard.map.clear();
  shard.map.emplace(std::string(piece), scratch);
}

}  // namespace stepserve::text
