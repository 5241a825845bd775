#include "text/tokenizer/normalizers.h"

#include <cstdlib>
#include <utility>
#include <vector>

#include <utf8proc.h>

#include "absl/strings/str_cat.h"
#include "text/tokenizer/json_path.h"
#include "text/tokenizer/pattern.h"
#include "text/tokenizer/unicode.h"

namespace stepserve::text {
namespace {

bool IsAscii(std::string_view s) {
  for (unsigned char c : s) {
    if (c >= 0x80) return false;
  }
  return true;
}

// NFC, NFD, NFKC, NFKD. ASCII is invariant under all four.
class UnicodeNormalizer : public Normalizer {
 public:
  explicit UnicodeNormalizer(int options) : options_(options) {}
  void Normalize(std::string* s) const override {
    if (IsAscii(*s)) return;
    utf8proc_uint8_t* out = nullptr;
    const utf8proc_ssize_t n =
        utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s->data()), static_cast<utf8proc_ssize_t>(s->size()),
                     &out, static_cast<utf8proc_option_t>(options_));
    if (n >= 0) s->assign(reinterpret_cast<const char*>(out), static_cast<size_t>(n));
    std::free(out);  // valid UTF-8 in, so utf8proc cannot fail but for memory
  }

 private:
  int options_;
};

// Rust's char::to_lowercase per character: the simple mapping, plus U+0130's full one.
class LowercaseNormalizer : public Normalizer {
 public:
  void Normalize(std::string* s) const override {
    if (IsAscii(*s)) {
      for (char& c : *s) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      }
      return;
    }
    std::string out;
    out.reserve(s->size());
    size_t i = 0;
    while (i < s->size()) {
      const char32_t c = DecodeUtf8(*s, &i);
      if (c == 0x130) {
        out.append("i\xCC\x87");
      } else {
        AppendUtf8(static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c))), &out);
      }
    }
    *s = std::move(out);
  }
};

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(std::unique_ptr<Regex> pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void Normalize(std::string* s) const override {
    std::string out;
    size_t prev = 0;
    bool any = false;
    pattern_->ForEachMatch(*s, [&](size_t b, size_t e) {
      if (b == e) return;
      any = true;
      out.append(*s, prev, b - prev);
      out.append(content_);
      prev = e;
    });
    if (!any) return;
    out.append(*s, prev, std::string::npos);
    *s = std::move(out);
  }

 private:
  std::unique_ptr<Regex> pattern_;
  std::string content_;
};

class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prepend) : prepend_(std::move(prepend)) {}
  void Normalize(std::string* s) const override {
    if (!s->empty()) s->insert(0, prepend_);
  }

 private:
  std::string prepend_;
};

class StripNormalizer : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  void Normalize(std::string* s) const override {
    size_t begin = 0, end = s->size();
    if (left_) {
      while (begin < end) {
        size_t i = begin;
        if (!IsWhitespace(DecodeUtf8(*s, &i))) break;
        begin = i;
      }
    }
    if (right_) {
      while (end > begin) {
        size_t start;
        if (!IsWhitespace(DecodeLastUtf8(std::string_view(*s).substr(0, end), &start))) break;
        end = start;
      }
    }
    *s = s->substr(begin, end - begin);
  }

 private:
  bool left_, right_;
};

// Removes nonspacing marks (general category Mn), as the crate's StripAccents.
class StripAccentsNormalizer : public Normalizer {
 public:
  void Normalize(std::string* s) const override {
    if (IsAscii(*s)) return;
    std::string out;
    out.reserve(s->size());
    size_t i = 0;
    while (i < s->size()) {
      const size_t start = i;
      const char32_t c = DecodeUtf8(*s, &i);
      if (utf8proc_category(static_cast<utf8proc_int32_t>(c)) == UTF8PROC_CATEGORY_MN) continue;
      out.append(*s, start, i - start);
    }
    *s = std::move(out);
  }
};

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> steps) : steps_(std::move(steps)) {}
  void Normalize(std::string* s) const override {
    for (const auto& step : steps_) step->Normalize(s);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> steps_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Normalizer>> NormalizerFromJson(const nlohmann::json& j, std::string_view path) {
  if (j.is_null()) return nullptr;
  absl::StatusOr<std::string> type = JsonType(j, path);
  if (!type.ok()) return type.status();
  if (*type == "NFC") return std::make_unique<UnicodeNormalizer>(UTF8PROC_STABLE | UTF8PROC_COMPOSE);
  if (*type == "NFD") return std::make_unique<UnicodeNormalizer>(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE);
  if (*type == "NFKC") {
    return std::make_unique<UnicodeNormalizer>(UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT);
  }
  if (*type == "NFKD") {
    return std::make_unique<UnicodeNormalizer>(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT);
  }
  if (*type == "Lowercase") return std::make_unique<LowercaseNormalizer>();
  if (*type == "StripAccents") return std::make_unique<StripAccentsNormalizer>();
  if (*type == "Strip") {
    auto left = JsonBool(j, path, "strip_left", true);
    if (!left.ok()) return left.status();
    auto right = JsonBool(j, path, "strip_right", true);
    if (!right.ok()) return right.status();
    return std::make_unique<StripNormalizer>(*left, *right);
  }
  if (*type == "Prepend") {
    auto prepend = JsonString(j, path, "prepend", "");
    if (!prepend.ok()) return prepend.status();
    return std::make_unique<PrependNormalizer>(*prepend);
  }
  if (*type == "Replace") {
    if (!j.contains("pattern")) return JsonError(JsonPathJoin(path, "pattern"), "missing");
    auto pattern = PatternFromJson(j["pattern"], JsonPathJoin(path, "pattern"));
    if (!pattern.ok()) return pattern.status();
    auto content = JsonString(j, path, "content", "");
    if (!content.ok()) return content.status();
    return std::make_unique<ReplaceNormalizer>(*std::move(pattern), *content);
  }
  if (*type == "Sequence") {
    const std::string list_path = JsonPathJoin(path, "normalizers");
    auto it = j.find("normalizers");
    if (it == j.end() || !it->is_array()) return JsonError(list_path, "expected an array");
    std::vector<std::unique_ptr<Normalizer>> steps;
    for (size_t i = 0; i < it->size(); ++i) {
      auto step = NormalizerFromJson((*it)[i], JsonPathIndex(list_path, i));
      if (!step.ok()) return step.status();
      if (*step != nullptr) steps.push_back(*std::move(step));
    }
    if (steps.empty()) return nullptr;
    if (steps.size() == 1) return std::move(steps[0]);
    return std::make_unique<SequenceNormalizer>(std::move(steps));
  }
  return JsonUnsupported(JsonPathJoin(path, "type"), absl::StrCat("normalizer \"", *type, "\""));
}

}  // namespace stepserve::text
