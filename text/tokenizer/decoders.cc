#include "text/tokenizer/decoders.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "text/tokenizer/byte_level.h"
#include "text/tokenizer/json_path.h"
#include "text/tokenizer/pattern.h"
#include "text/tokenizer/unicode.h"

namespace stepserve::text {
namespace {

constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";

// The end of the chain: the crate joins the decoder's strings with "" (or the tokens with " " when there
// is no decoder).
class JoinStage : public DecodeStage {
 public:
  JoinStage(std::string* out, bool with_spaces) : out_(out), with_spaces_(with_spaces) {}
  void Push(std::string_view text, bool begin, bool) override {
    if (with_spaces_ && begin) {
      if (started_) out_->push_back(' ');
      started_ = true;
    }
    out_->append(text);
  }
  void Finish() override {}

 private:
  std::string* out_;
  bool with_spaces_;
  bool started_ = false;
};

// Base of the stages that need whole items: fragments are gathered until the item ends.
class WholeItemStage : public DecodeStage {
 public:
  void Push(std::string_view text, bool begin, bool end) override {
    if (begin && end) {
      Item(text);
      return;
    }
    if (begin) buffer_.clear();
    buffer_.append(text);
    if (end) {
      std::string item = std::move(buffer_);
      buffer_.clear();
      Item(item);
    }
  }

 protected:
  virtual void Item(std::string_view item) = 0;

 private:
  std::string buffer_;
};

// All tokens' bytes (a token with a character outside the table contributes its UTF-8 as is) decoded as
// one lossy UTF-8 string; a character split across tokens is emitted once whole.
class ByteLevelStage : public WholeItemStage {
 public:
  void Finish() override {
    std::string text;
    AppendUtf8Lossy(pending_, &text);
    pending_.clear();
    next_->Push(text, !started_, true);
    started_ = true;
    next_->Finish();
  }

 protected:
  void Item(std::string_view item) override {
    if (!ByteLevelTokenToBytes(item, &pending_)) pending_.append(item);
    text_.clear();
    const size_t used = AppendUtf8LossyPrefix(pending_, &text_);
    pending_.erase(0, used);
    if (!text_.empty()) {
      next_->Push(text_, !started_, false);
      started_ = true;
    }
  }

 private:
  std::string pending_;  // at most 3 bytes of an incomplete character
  std::string text_;
  bool started_ = false;
};

class FuseStage : public DecodeStage {
 public:
  void Push(std::string_view text, bool, bool) override {
    if (text.empty() && started_) return;
    next_->Push(text, !started_, false);
    started_ = true;
  }
  void Finish() override {
    next_->Push("", !started_, true);
    started_ = true;
    next_->Finish();
  }

 private:
  bool started_ = false;
};

// Runs of <0xXX> tokens become their bytes when those are valid UTF-8, else one U+FFFD per byte: a run is
// decided only when it ends.
class ByteFallbackStage : public WholeItemStage {
 public:
  void Finish() override {
    Resolve();
    next_->Finish();
  }

 protected:
  void Item(std::string_view item) override {
    int byte;
    if (ByteToken(item, &byte)) {
      group_.push_back(static_cast<char>(byte));
      return;
    }
    Resolve();
    next_->Push(item, true, true);
  }

 private:
  static int HexDigit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }
  // As the crate: six bytes "<0x" .. ">", the two between parsed by u8::from_str_radix(.., 16).
  static bool ByteToken(std::string_view t, int* byte) {
    if (t.size() != 6 || t.substr(0, 3) != "<0x" || t[5] != '>') return false;
    const int lo = HexDigit(t[4]);
    if (lo < 0) return false;
    if (t[3] == '+') {
      *byte = lo;
      return true;
    }
    const int hi = HexDigit(t[3]);
    if (hi < 0) return false;
    *byte = hi * 16 + lo;
    return true;
  }
  void Resolve() {
    if (group_.empty()) return;
    if (IsWellFormedUtf8(group_)) {
      next_->Push(group_, true, true);
    } else {
      for (size_t i = 0; i < group_.size(); ++i) next_->Push(kReplacementChar, true, true);
    }
    group_.clear();
  }
  std::string group_;
};

// The Replace decoder: every match in each item replaced. A literal pattern is applied as fragments
// arrive (holding back what could begin a match); a regex waits for the whole item.
class ReplaceStage : public DecodeStage {
 public:
  ReplaceStage(const Regex* regex, std::string_view literal, std::string_view content)
      : regex_(regex), literal_(literal), content_(content) {}
  void Push(std::string_view text, bool begin, bool end) override {
    if (begin) {
      buffer_.clear();
      open_ = false;
    }
    buffer_.append(text);
    std::string out;
    if (end) {
      ReplaceAll(&out);
      buffer_.clear();
    } else if (regex_ == nullptr) {
      ReplaceDecided(&out);
    }
    if (!out.empty() || end) {
      next_->Push(out, !open_, end);
      open_ = !end;
    }
  }
  void Finish() override { next_->Finish(); }

 private:
  void ReplaceAll(std::string* out) {
    size_t prev = 0;
    if (regex_ != nullptr) {
      regex_->ForEachMatch(buffer_, [&](size_t b, size_t e) {
        if (b == e) return;
        out->append(buffer_, prev, b - prev);
        out->append(content_);
        prev = e;
      });
    } else if (!literal_.empty()) {
      size_t f;
      while ((f = buffer_.find(literal_, prev)) != std::string::npos) {
        out->append(buffer_, prev, f - prev);
        out->append(content_);
        prev = f + literal_.size();
      }
    }
    out->append(buffer_, prev, std::string::npos);
  }
  void ReplaceDecided(std::string* out) {
    if (literal_.empty()) {
      out->swap(buffer_);
      buffer_.clear();
      return;
    }
    size_t prev = 0, f;
    while ((f = buffer_.find(literal_, prev)) != std::string::npos) {
      out->append(buffer_, prev, f - prev);
      out->append(content_);
      prev = f + literal_.size();
    }
    size_t keep = buffer_.size() >= literal_.size() - 1 ? buffer_.size() - (literal_.size() - 1) : 0;
    if (keep < prev) keep = prev;
    while (keep > prev && keep < buffer_.size() && (static_cast<unsigned char>(buffer_[keep]) & 0xC0) == 0x80) --keep;
    out->append(buffer_, prev, keep - prev);
    buffer_.erase(0, keep);
  }
  const Regex* regex_;
  std::string literal_;
  std::string content_;
  std::string buffer_;
  bool open_ = false;
};

// Strip: up to `start` leading and `stop` trailing `content` characters off each item; trailing ones are
// held back until the item ends or another character follows.
class StripStage : public DecodeStage {
 public:
  StripStage(char32_t content, size_t start, size_t stop) : content_(content), start_(start), stop_(stop) {}
  void Push(std::string_view text, bool begin, bool end) override {
    if (begin) {
      lead_left_ = start_;
      leading_ = true;
      held_.clear();
      held_count_ = 0;
      open_ = false;
    }
    std::string out;
    size_t i = 0;
    while (i < text.size()) {
      const size_t s = i;
      const char32_t c = DecodeUtf8(text, &i);
      if (leading_) {
        if (lead_left_ > 0 && c == content_) {
          --lead_left_;
          continue;
        }
        leading_ = false;
      }
      if (stop_ > 0 && c == content_) {
        held_.append(text.data() + s, i - s);
        if (++held_count_ > stop_) {
          // The oldest held character can no longer be among the last `stop`.
          const size_t len = Utf8CharLength(static_cast<unsigned char>(held_[0]));
          out.append(held_, 0, len);
          held_.erase(0, len);
          --held_count_;
        }
        continue;
      }
      out.append(held_);
      held_.clear();
      held_count_ = 0;
      out.append(text.data() + s, i - s);
    }
    if (!out.empty() || end) {
      next_->Push(out, !open_, end);
      open_ = !end;
    }
  }
  void Finish() override { next_->Finish(); }

 private:
  char32_t content_;
  size_t start_, stop_;
  size_t lead_left_ = 0;
  bool leading_ = true;
  std::string held_;
  size_t held_count_ = 0;
  bool open_ = false;
};

// Metaspace: the replacement character becomes a space, except in the first item where (unless the
// prepend scheme is "never") it is dropped.
class MetaspaceStage : public DecodeStage {
 public:
  MetaspaceStage(std::string replacement, bool drop_in_first)
      : replacement_(std::move(replacement)), drop_in_first_(drop_in_first) {}
  void Push(std::string_view text, bool begin, bool end) override {
    if (begin) ++item_;
    const bool drop = item_ == 1 && drop_in_first_;
    std::string out;
    size_t pos = 0, f;
    while ((f = text.find(replacement_, pos)) != std::string_view::npos) {
      out.append(text.data() + pos, f - pos);
      if (!drop) out.push_back(' ');
      pos = f + replacement_.size();
    }
    out.append(text.data() + pos, text.size() - pos);
    next_->Push(out, begin, end);
  }
  void Finish() override { next_->Finish(); }

 private:
  std::string replacement_;
  bool drop_in_first_;
  size_t item_ = 0;
};

class ByteLevelDecoder : public Decoder {
 public:
  void NewStages(std::vector<std::unique_ptr<DecodeStage>>* stages) const override {
    stages->push_back(std::make_unique<ByteLevelStage>());
  }
};

class ByteFallbackDecoder : public Decoder {
 public:
  void NewStages(std::vector<std::unique_ptr<DecodeStage>>* stages) const override {
    stages->push_back(std::make_unique<ByteFallbackStage>());
  }
};

class FuseDecoder : public Decoder {
 public:
  void NewStages(std::vector<std::unique_ptr<DecodeStage>>* stages) const override {
    stages->push_back(std::make_unique<FuseStage>());
  }
};

class ReplaceDecoder : public Decoder {
 public:
  ReplaceDecoder(std::unique_ptr<Regex> regex, std::string literal, std::string content)
      : regex_(std::move(regex)), literal_(std::move(literal)), content_(std::move(content)) {}
  void NewStages(std::vector<std::unique_ptr<DecodeStage>>* stages) const override {
    stages->push_back(std::make_unique<ReplaceStage>(regex_.get(), literal_, content_));
  }

 private:
  std::unique_ptr<Regex> regex_;  // null for a String pattern
  std::string literal_;
  std::string content_;
};

class StripDecoder : public Decoder {
 public:
  StripDecoder(char32_t content, size_t start, size_t stop) : content_(content), start_(start), stop_(stop) {}
  void NewStages(std::vector<std::unique_ptr<DecodeStage>>* stages) const override {
    stages->push_back(std::make_unique<StripStage>(content_, start_, stop_));
  }

 private:
  char32_t content_;
  size_t start_, stop_;
};

class MetaspaceDecoder : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, bool drop_in_first)
      : replacement_(std::move(replacement)), drop_in_first_(drop_in_first) {}
  void NewStages(std::vector<std::unique_ptr<DecodeStage>>* stages) const override {
    stages->push_back(std::make_unique<MetaspaceStage>(replacement_, drop_in_first_));
  }

 private:
  std::string replacement_;
  bool drop_in_first_;
};

class SequenceDecoder : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> steps) : steps_(std::move(steps)) {}
  void NewStages(std::vector<std::unique_ptr<DecodeStage>>* stages) const override {
    for (const auto& step : steps_) step->NewStages(stages);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> steps_;
};

// One character, as the crate's `char` fields.
absl::StatusOr<char32_t> OneChar(const nlohmann::json& j, std::string_view path, const char* key,
                                 std::string_view def) {
  auto s = JsonString(j, path, key, def);
  if (!s.ok()) return s.status();
  if (s->empty() || !IsWellFormedUtf8(*s)) return JsonError(JsonPathJoin(path, key), "expected one character");
  size_t i = 0;
  const char32_t c = DecodeUtf8(*s, &i);
  if (i != s->size()) return JsonError(JsonPathJoin(path, key), "expected one character");
  return c;
}

}  // namespace

DecodeStream::DecodeStream(const Decoder* decoder) {
  if (decoder != nullptr) decoder->NewStages(&stages_);
  stages_.push_back(std::make_unique<JoinStage>(&out_, decoder == nullptr));
  for (size_t i = 0; i + 1 < stages_.size(); ++i) stages_[i]->set_next(stages_[i + 1].get());
  head_ = stages_.front().get();
}

absl::StatusOr<std::unique_ptr<Decoder>> DecoderFromJson(const nlohmann::json& j, std::string_view path) {
  if (j.is_null()) return nullptr;
  absl::StatusOr<std::string> type = JsonType(j, path);
  if (!type.ok()) return type.status();
  if (*type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (*type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (*type == "Fuse") return std::make_unique<FuseDecoder>();
  if (*type == "Replace") {
    const std::string ppath = JsonPathJoin(path, "pattern");
    auto pit = j.find("pattern");
    if (pit == j.end()) return JsonError(ppath, "missing");
    auto content = JsonString(j, path, "content", "");
    if (!content.ok()) return content.status();
    if (pit->is_object() && pit->contains("String") && (*pit)["String"].is_string()) {
      return std::make_unique<ReplaceDecoder>(nullptr, (*pit)["String"].get<std::string>(), *content);
    }
    auto re = PatternFromJson(*pit, ppath);
    if (!re.ok()) return re.status();
    return std::make_unique<ReplaceDecoder>(*std::move(re), "", *content);
  }
  if (*type == "Strip") {
    auto content = OneChar(j, path, "content", " ");
    if (!content.ok()) return content.status();
    auto start = JsonInt(j, path, "start", 0);
    if (!start.ok()) return start.status();
    auto stop = JsonInt(j, path, "stop", 0);
    if (!stop.ok()) return stop.status();
    if (*start < 0 || *stop < 0) return JsonError(path, "start and stop must be non-negative");
    return std::make_unique<StripDecoder>(*content, static_cast<size_t>(*start), static_cast<size_t>(*stop));
  }
  if (*type == "Metaspace") {
    auto replacement = OneChar(j, path, "replacement", "\xE2\x96\x81");
    if (!replacement.ok()) return replacement.status();
    std::string rep;
    AppendUtf8(*replacement, &rep);
    bool drop = true;
    if (j.contains("prepend_scheme") && !j["prepend_scheme"].is_null()) {
      auto scheme = JsonString(j, path, "prepend_scheme", "always");
      if (!scheme.ok()) return scheme.status();
      if (*scheme != "always" && *scheme != "first" && *scheme != "never") {
        return JsonError(JsonPathJoin(path, "prepend_scheme"), absl::StrCat("unknown scheme \"", *scheme, "\""));
      }
      drop = *scheme != "never";
    } else {
      auto add = JsonBool(j, path, "add_prefix_space", true);
      if (!add.ok()) return add.status();
      drop = *add;
    }
    return std::make_unique<MetaspaceDecoder>(rep, drop);
  }
  if (*type == "Sequence") {
    const std::string list_path = JsonPathJoin(path, "decoders");
    auto it = j.find("decoders");
    if (it == j.end() || !it->is_array()) return JsonError(list_path, "expected an array");
    std::vector<std::unique_ptr<Decoder>> steps;
    for (size_t i = 0; i < it->size(); ++i) {
      auto step = DecoderFromJson((*it)[i], JsonPathIndex(list_path, i));
      if (!step.ok()) return step.status();
      if (*step == nullptr) return JsonError(JsonPathIndex(list_path, i), "null decoder in a Sequence");
      steps.push_back(*std::move(step));
    }
    return std::make_unique<SequenceDecoder>(std::move(steps));
  }
  return JsonUnsupported(JsonPathJoin(path, "type"), absl::StrCat("decoder \"", *type, "\""));
}

}  // namespace stepserve::text
