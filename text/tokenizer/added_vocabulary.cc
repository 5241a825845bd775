#include "text/tokenizer/added_vocabulary.h"

#include <algorithm>

#include "text/tokenizer/json_path.h"
#include "text/tokenizer/normalizers.h"
#include "text/tokenizer/unicode.h"

namespace stepserve::text {

void AddedVocabulary::Matcher::Add(std::string_view pattern, int32_t token) {
  if (nodes.empty()) nodes.emplace_back();
  if (pattern.empty()) return;
  int32_t node = 0;
  for (unsigned char b : pattern) {
    const uint64_t key = (static_cast<uint64_t>(node) << 8) | b;
    auto it = edges.find(key);
    if (it == edges.end()) {
      nodes.emplace_back();
      const auto child = static_cast<int32_t>(nodes.size() - 1);
      edges.emplace(key, child);
      node = child;
    } else {
      node = it->second;
    }
  }
  nodes[node].token = token;
  first_byte[static_cast<unsigned char>(pattern[0])] = true;
}

absl::StatusOr<AddedVocabulary> AddedVocabulary::FromJson(const nlohmann::json& added_tokens,
                                                          std::string_view path, const Normalizer* normalizer) {
  AddedVocabulary v;
  v.raw_.nodes.emplace_back();
  v.normalized_.nodes.emplace_back();
  if (added_tokens.is_null()) return v;
  if (!added_tokens.is_array()) return JsonError(path, "expected an array");
  for (size_t i = 0; i < added_tokens.size(); ++i) {
    const auto& t = added_tokens[i];
    const std::string p = JsonPathIndex(path, i);
    if (!t.is_object()) return JsonError(p, "expected an object");
    AddedToken token;
    auto id = JsonInt(t, p, "id", -1);
    if (!id.ok()) return id.status();
    if (*id < 0 || *id > INT32_MAX) return JsonError(JsonPathJoin(p, "id"), "missing or out of range");
    token.id = static_cast<int32_t>(*id);
    if (!t.contains("content") || !t["content"].is_string()) return JsonError(JsonPathJoin(p, "content"), "missing");
    token.content = t["content"].get<std::string>();
    for (auto [key, field, def] : {std::tuple{"single_word", &token.single_word, false},
                                   std::tuple{"lstrip", &token.lstrip, false},
                                   std::tuple{"rstrip", &token.rstrip, false},
                                   std::tuple{"normalized", &token.normalized, true},
                                   std::tuple{"special", &token.special, false}}) {
      auto b = JsonBool(t, p, key, def);
      if (!b.ok()) return b.status();
      *field = *b;
    }
    v.max_id_ = std::max(v.max_id_, token.id);
    v.by_id_[token.id] = v.tokens_.size();
    v.by_content_[token.content] = token.id;
    if (token.special) v.special_contents_.insert(token.content);
    v.tokens_.push_back(std::move(token));
  }
  for (size_t i = 0; i < v.tokens_.size(); ++i) {
    const AddedToken& token = v.tokens_[i];
    if (token.normalized) {
      std::string form = token.content;
      if (normalizer != nullptr) normalizer->Normalize(&form);
      v.normalized_.Add(form, static_cast<int32_t>(i));
    } else {
      v.raw_.Add(token.content, static_cast<int32_t>(i));
    }
  }
  return v;
}

const AddedToken* AddedVocabulary::ById(int32_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

std::optional<int32_t> AddedVocabulary::IdOf(std::string_view content) const {
  auto it = by_content_.find(ToAbsl(content));
  if (it == by_content_.end()) return std::nullopt;
  return it->second;
}

void AddedVocabulary::Split(const Matcher& m, std::string_view text, AddedSplitSink sink) const {
  if (m.empty()) {
    if (!text.empty()) sink(text, -1, 0);
    return;
  }
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t start_offset = 0;  // end of the last emitted piece
  size_t i = 0;             // where the (non-overlapping) search resumes
  while (i < n) {
    if (!m.first_byte[p[i]]) {
      ++i;
      continue;
    }
    // The longest token starting at i.
    int32_t node = 0, best = -1;
    size_t best_end = 0;
    for (size_t j = i; j < n; ++j) {
      auto it = m.edges.find((static_cast<uint64_t>(node) << 8) | p[j]);
      if (it == m.edges.end()) break;
      node = it->second;
      if (m.nodes[node].token >= 0) {
        best = m.nodes[node].token;
        best_end = j + 1;
      }
    }
    if (best < 0) {
      ++i;
      continue;
    }
    const AddedToken& token = tokens_[best];
    size_t start = i, stop = best_end;
    i = best_end;
    if (token.single_word) {
      bool word_before = false, word_after = false;
      if (start > 0) {
        size_t s;
        word_before = IsWordChar(DecodeLastUtf8(text.substr(0, start), &s));
      }
      if (stop < n) {
        size_t k = stop;
        word_after = IsWordChar(DecodeUtf8(text, &k));
      }
      if (word_before || word_after) continue;  // not a whole word: stays text
    }
    if (token.lstrip) {
      size_t new_start = start;
      while (new_start > 0) {
        size_t s;
        if (!IsWhitespace(DecodeLastUtf8(text.substr(0, new_start), &s))) break;
        new_start = s;
      }
      start = std::max(new_start, start_offset);
    }
    if (token.rstrip) {
      while (stop < n) {
        size_t k = stop;
        if (!IsWhitespace(DecodeUtf8(text, &k))) break;
        stop = k;
      }
    }
    if (start_offset < start) sink(text.substr(start_offset, start - start_offset), -1, start_offset);
    sink(text.substr(start, stop - start), token.id, start);
    start_offset = stop;
  }
  if (start_offset < n) sink(text.substr(start_offset), -1, start_offset);
}

}  // namespace stepserve::text
