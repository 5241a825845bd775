// A compiled PCRE2 pattern (UTF + UCP, JIT when available) with the semantics the tokenizers crate gets
// from Oniguruma: leftmost-first backtracking, Unicode classes. Shared by threads: each thread matches
// with its own reused match data and JIT stack.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace stepserve::text {

class Regex {
 public:
  // `pattern` as written in tokenizer.json (Oniguruma/Rust syntax; \uHHHH is accepted).
  static absl::StatusOr<std::unique_ptr<Regex>> Compile(std::string_view pattern);
  // A pattern that matches `literal` exactly.
  static absl::StatusOr<std::unique_ptr<Regex>> Literal(std::string_view literal);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // The first match in text[start..] (text must be valid UTF-8 and start a character boundary).
  bool Find(std::string_view text, size_t start, size_t* match_begin, size_t* match_end) const;

  // Calls fn(begin, end) for each match, left to right, non-overlapping. After an empty match the search
  // resumes one character further on (as Oniguruma's find_iter).
  template <typename Fn>
  void ForEachMatch(std::string_view text, Fn&& fn) const {
    size_t pos = 0;
    size_t b, e;
    while (pos <= text.size() && Find(text, pos, &b, &e)) {
      fn(b, e);
      if (e == b) {
        if (e >= text.size()) break;
        pos = e + 1;
        while (pos < text.size() && (static_cast<unsigned char>(text[pos]) & 0xC0) == 0x80) ++pos;
      } else {
        pos = e;
      }
    }
  }

  const std::string& pattern() const { return pattern_; }

 private:
  Regex() = default;
  std::string pattern_;
  void* code_ = nullptr;  // pcre2_code_8*
  bool jit_ = false;
};

}  // namespace stepserve::text
