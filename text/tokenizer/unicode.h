// UTF-8 helpers of the tokenizer: validation, code point decoding/encoding, Rust's lossy decoding
// (String::from_utf8_lossy, which Hugging Face's decoders use) and the character classes the added-token
// rules need.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/strings/string_view.h"

namespace stepserve::text {

// This Abseil build has its own string_view: the hash containers are looked up through it.
inline absl::string_view ToAbsl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// True when `s` is well-formed UTF-8 (no surrogates, no overlongs, nothing above U+10FFFF).
bool IsWellFormedUtf8(std::string_view s);

// Byte length of the character that starts with `lead` (valid UTF-8 assumed): 1 to 4.
inline size_t Utf8CharLength(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  return 4;
}

// Decodes the character at s[*i] of valid UTF-8 and advances *i past it.
char32_t DecodeUtf8(std::string_view s, size_t* i);
// Decodes the last character of non-empty valid UTF-8; its start goes to *start.
char32_t DecodeLastUtf8(std::string_view s, size_t* start);
void AppendUtf8(char32_t cp, std::string* out);

// Appends `bytes` decoded as Rust's String::from_utf8_lossy does: each maximal invalid subpart (and an
// incomplete sequence at the end) becomes one U+FFFD.
void AppendUtf8Lossy(std::string_view bytes, std::string* out);
// The streaming form: appends what is already decided and returns how many bytes of `bytes` it consumed.
// What is left (at most 3 bytes) is the start of a well-formed sequence that more bytes may complete.
size_t AppendUtf8LossyPrefix(std::string_view bytes, std::string* out);

// Unicode White_Space (Rust's char::is_whitespace and regex \s).
bool IsWhitespace(char32_t c);
// Rust regex's \w: alphabetic, marks, decimal digits, connector punctuation, join controls.
bool IsWordChar(char32_t c);
// Rust's char::is_numeric: general categories Nd, Nl, No.
bool IsNumeric(char32_t c);

}  // namespace stepserve::text
