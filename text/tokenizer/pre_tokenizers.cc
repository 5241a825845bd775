#include "text/tokenizer/pre_tokenizers.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "text/tokenizer/json_path.h"
#include "text/tokenizer/pattern.h"
#include "text/tokenizer/regex.h"
#include "text/tokenizer/unicode.h"

namespace stepserve::text {

const char kGpt2SplitPattern[] =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

namespace {

struct Segment {
  size_t begin, end;
  bool is_match;
};

// The tokenizers crate's NormalizedString::split: `segs` cover the text (matches and the gaps between
// them); the behavior decides which are kept and what is merged.
void EmitSegments(std::string_view text, bool at_start, std::vector<Segment>& segs, SplitBehavior behavior,
                  bool invert, PieceSink sink) {
  if (invert) {
    for (Segment& s : segs) s.is_match = !s.is_match;
  }
  std::vector<Segment> out;
  out.reserve(segs.size());
  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::kIsolated:
      out = segs;
      for (Segment& s : out) s.is_match = false;
      break;
    case SplitBehavior::kRemoved:
      out = segs;
      break;
    case SplitBehavior::kContiguous:
      for (const Segment& s : segs) {
        if (s.is_match == previous_match && !out.empty()) {
          out.back().end = s.end;
        } else {
          out.push_back({s.begin, s.end, false});
        }
        previous_match = s.is_match;
      }
      break;
    case SplitBehavior::kMergedWithPrevious:
      for (const Segment& s : segs) {
        if (s.is_match && !previous_match && !out.empty()) {
          out.back().end = s.end;
        } else {
          out.push_back({s.begin, s.end, false});
        }
        previous_match = s.is_match;
      }
      break;
    case SplitBehavior::kMergedWithNext:
      for (size_t k = segs.size(); k-- > 0;) {
        const Segment& s = segs[k];
        if (s.is_match && !previous_match && !out.empty()) {
          out.back().begin = s.begin;
        } else {
          out.push_back({s.begin, s.end, false});
        }
        previous_match = s.is_match;
      }
      std::reverse(out.begin(), out.end());
      break;
  }
  for (const Segment& s : out) {
    // In the Removed behavior, is_match marks what goes.
    if (s.is_match || s.end == s.begin) continue;
    sink(text.substr(s.begin, s.end - s.begin), at_start && s.begin == 0);
  }
}

// Covers `text` with the matches of `re` and the gaps between them.
void RegexSegments(const Regex& re, std::string_view text, std::vector<Segment>* segs) {
  size_t prev = 0;
  re.ForEachMatch(text, [&](size_t b, size_t e) {
    if (prev != b) segs->push_back({prev, b, false});
    segs->push_back({b, e, true});
    prev = e;
  });
  if (prev != text.size()) segs->push_back({prev, text.size(), false});
}

class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(std::unique_ptr<Regex> re, SplitBehavior behavior, bool invert)
      : re_(std::move(re)), behavior_(behavior), invert_(invert) {}

  void PreTokenize(std::string_view text, bool at_start, PieceSink sink) const override {
    if (behavior_ == SplitBehavior::kIsolated) {
      // The hot path (every HF byte-level tokenizer): matches and gaps are all pieces; no list.
      size_t prev = 0;
      re_->ForEachMatch(text, [&](size_t b, size_t e) {
        if (prev != b) sink(text.substr(prev, b - prev), at_start && prev == 0);
        if (e != b) sink(text.substr(b, e - b), at_start && b == 0);
        prev = e;
      });
      if (prev != text.size()) sink(text.substr(prev), at_start && prev == 0);
      return;
    }
    std::vector<Segment> segs;
    RegexSegments(*re_, text, &segs);
    EmitSegments(text, at_start, segs, behavior_, invert_, sink);
  }

 private:
  std::unique_ptr<Regex> re_;
  SplitBehavior behavior_;
  bool invert_;
};

// ByteLevel's splitting part: the optional prefix space and GPT-2's regex. The byte-to-unicode mapping is
// the model's (PreTokenizerChain::byte_level).
class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, std::unique_ptr<Regex> re)
      : add_prefix_space_(add_prefix_space), re_(std::move(re)) {}

  void PreTokenize(std::string_view text, bool at_start, PieceSink sink) const override {
    std::string prefixed;
    if (add_prefix_space_ && (text.empty() || text[0] != ' ')) {
      prefixed.reserve(text.size() + 1);
      prefixed.push_back(' ');
      prefixed.append(text);
      text = prefixed;
    }
    if (re_ == nullptr) {
      if (!text.empty()) sink(text, at_start);
      return;
    }
    size_t prev = 0;
    re_->ForEachMatch(text, [&](size_t b, size_t e) {
      if (prev != b) sink(text.substr(prev, b - prev), at_start && prev == 0);
      if (e != b) sink(text.substr(b, e - b), at_start && b == 0);
      prev = e;
    });
    if (prev != text.size()) sink(text.substr(prev), at_start && prev == 0);
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> re_;  // null without use_regex
};

// Digits: each numeric character a match; individual_digits isolates them, otherwise runs stay together.
class DigitsPreTokenizer : public PreTokenizer {
 public:
  explicit DigitsPreTokenizer(bool individual) : individual_(individual) {}
  void PreTokenize(std::string_view text, bool at_start, PieceSink sink) const override {
    std::vector<Segment> segs;
    size_t i = 0, prev = 0;
    while (i < text.size()) {
      const size_t start = i;
      const char32_t c = DecodeUtf8(text, &i);
      if (!IsNumeric(c)) continue;
      if (prev != start) segs.push_back({prev, start, false});
      segs.push_back({start, i, true});
      prev = i;
    }
    if (prev != text.size()) segs.push_back({prev, text.size(), false});
    EmitSegments(text, at_start, segs,
                 individual_ ? SplitBehavior::kIsolated : SplitBehavior::kContiguous, false, sink);
  }

 private:
  bool individual_;
};

enum class PrependScheme { kAlways, kFirst, kNever };

class MetaspacePreTokenizer : public PreTokenizer {
 public:
  MetaspacePreTokenizer(std::string replacement, PrependScheme scheme, bool split)
      : replacement_(std::move(replacement)), scheme_(scheme), split_(split) {}

  void PreTokenize(std::string_view text, bool at_start, PieceSink sink) const override {
    std::string s;
    s.reserve(text.size() + replacement_.size() * 4);
    for (char c : text) {
      if (c == ' ') {
        s.append(replacement_);
      } else {
        s.push_back(c);
      }
    }
    const bool starts = s.compare(0, replacement_.size(), replacement_) == 0;
    if (!starts && (scheme_ == PrependScheme::kAlways || (scheme_ == PrependScheme::kFirst && at_start))) {
      s.insert(0, replacement_);
    }
    if (!split_) {
      if (!s.empty()) sink(s, at_start);
      return;
    }
    std::vector<Segment> segs;
    size_t prev = 0, pos = 0;
    while ((pos = s.find(replacement_, pos)) != std::string::npos) {
      if (prev != pos) segs.push_back({prev, pos, false});
      segs.push_back({pos, pos + replacement_.size(), true});
      pos += replacement_.size();
      prev = pos;
    }
    if (prev != s.size()) segs.push_back({prev, s.size(), false});
    EmitSegments(s, at_start, segs, SplitBehavior::kMergedWithNext, false, sink);
  }

 private:
  std::string replacement_;
  PrependScheme scheme_;
  bool split_;
};

absl::StatusOr<SplitBehavior> ParseBehavior(const nlohmann::json& j, std::string_view path) {
  auto b = JsonString(j, path, "behavior", "");
  if (!b.ok()) return b.status();
  if (*b == "Removed") return SplitBehavior::kRemoved;
  if (*b == "Isolated") return SplitBehavior::kIsolated;
  if (*b == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (*b == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (*b == "Contiguous") return SplitBehavior::kContiguous;
  return JsonError(JsonPathJoin(path, "behavior"), absl::StrCat("unknown behavior \"", *b, "\""));
}

absl::Status Flatten(const nlohmann::json& j, std::string_view path, PreTokenizerChain* chain) {
  if (j.is_null()) return absl::OkStatus();
  absl::StatusOr<std::string> type = JsonType(j, path);
  if (!type.ok()) return type.status();
  if (chain->byte_level) {
    return JsonUnsupported(path, "a pre-tokenizer after ByteLevel");
  }
  if (*type == "Sequence") {
    const std::string list_path = JsonPathJoin(path, "pretokenizers");
    auto it = j.find("pretokenizers");
    if (it == j.end() || !it->is_array()) return JsonError(list_path, "expected an array");
    for (size_t i = 0; i < it->size(); ++i) {
      absl::Status s = Flatten((*it)[i], JsonPathIndex(list_path, i), chain);
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }
  if (*type == "Split") {
    auto pit = j.find("pattern");
    if (pit == j.end()) return JsonError(JsonPathJoin(path, "pattern"), "missing");
    auto re = PatternFromJson(*pit, JsonPathJoin(path, "pattern"));
    if (!re.ok()) return re.status();
    auto behavior = ParseBehavior(j, path);
    if (!behavior.ok()) return behavior.status();
    auto invert = JsonBool(j, path, "invert", false);
    if (!invert.ok()) return invert.status();
    chain->steps.push_back(std::make_unique<SplitPreTokenizer>(*std::move(re), *behavior, *invert));
    return absl::OkStatus();
  }
  if (*type == "ByteLevel") {
    auto prefix = JsonBool(j, path, "add_prefix_space", true);
    if (!prefix.ok()) return prefix.status();
    auto use_regex = JsonBool(j, path, "use_regex", true);
    if (!use_regex.ok()) return use_regex.status();
    std::unique_ptr<Regex> re;
    if (*use_regex) {
      auto compiled = Regex::Compile(kGpt2SplitPattern);
      if (!compiled.ok()) return compiled.status();
      re = *std::move(compiled);
    }
    chain->steps.push_back(std::make_unique<ByteLevelPreTokenizer>(*prefix, std::move(re)));
    chain->byte_level = true;
    return absl::OkStatus();
  }
  if (*type == "Digits") {
    auto individual = JsonBool(j, path, "individual_digits", false);
    if (!individual.ok()) return individual.status();
    chain->steps.push_back(std::make_unique<DigitsPreTokenizer>(*individual));
    return absl::OkStatus();
  }
  if (*type == "Whitespace" || *type == "WhitespaceSplit") {
    const bool split_only = *type == "WhitespaceSplit";
    auto re = Regex::Compile(split_only ? R"(\s+)" : R"(\w+|[^\w\s]+)");
    if (!re.ok()) return re.status();
    // Whitespace keeps its matches (drops the gaps: invert + Removed); WhitespaceSplit drops its matches.
    chain->steps.push_back(std::make_unique<SplitPreTokenizer>(*std::move(re), SplitBehavior::kRemoved,
                                                               /*invert=*/!split_only));
    return absl::OkStatus();
  }
  if (*type == "Metaspace") {
    auto replacement = JsonString(j, path, "replacement", "\xE2\x96\x81");
    if (!replacement.ok()) return replacement.status();
    if (replacement->empty()) return JsonError(JsonPathJoin(path, "replacement"), "empty");
    auto split = JsonBool(j, path, "split", true);
    if (!split.ok()) return split.status();
    PrependScheme scheme = PrependScheme::kAlways;
    if (j.contains("prepend_scheme") && !j["prepend_scheme"].is_null()) {
      auto s = JsonString(j, path, "prepend_scheme", "always");
      if (!s.ok()) return s.status();
      if (*s == "always") {
        scheme = PrependScheme::kAlways;
      } else if (*s == "first") {
        scheme = PrependScheme::kFirst;
      } else if (*s == "never") {
        scheme = PrependScheme::kNever;
      } else {
        return JsonError(JsonPathJoin(path, "prepend_scheme"), absl::StrCat("unknown scheme \"", *s, "\""));
      }
    } else {
      auto add = JsonBool(j, path, "add_prefix_space", true);
      if (!add.ok()) return add.status();
      scheme = *add ? PrependScheme::kAlways : PrependScheme::kNever;
    }
    chain->steps.push_back(std::make_unique<MetaspacePreTokenizer>(*replacement, scheme, *split));
    return absl::OkStatus();
  }
  return JsonUnsupported(JsonPathJoin(path, "type"), absl::StrCat("pre-tokenizer \"", *type, "\""));
}

}  // namespace

void PreTokenizerChain::RunFrom(size_t step, std::string_view text, bool at_start, PieceSink sink) const {
  if (step == steps.size()) {
    if (!text.empty()) sink(text, at_start);
    return;
  }
  steps[step]->PreTokenize(text, at_start, [&](std::string_view piece, bool piece_at_start) {
    RunFrom(step + 1, piece, piece_at_start, sink);
  });
}

absl::StatusOr<PreTokenizerChain> PreTokenizerFromJson(const nlohmann::json& j, std::string_view path) {
  PreTokenizerChain chain;
  absl::Status s = Flatten(j, path, &chain);
  if (!s.ok()) return s;
  return chain;
}

}  // namespace stepserve::text
