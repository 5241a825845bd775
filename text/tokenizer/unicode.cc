#include "text/tokenizer/unicode.h"

#include <utf8proc.h>

namespace stepserve::text {
namespace {

bool IsCont(unsigned char b) { return (b & 0xC0) == 0x80; }

// Length of the well-formed sequence at s[i], 0 when it is invalid, or -n when the n bytes left at the end
// are a well-formed but incomplete prefix. On an invalid sequence, *error_len is the number of bytes of its
// maximal invalid subpart (Rust's Utf8Error::error_len).
int SequenceAt(std::string_view s, size_t i, int* error_len) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  const unsigned char b0 = p[i];
  if (b0 < 0x80) return 1;
  int width;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    width = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    width = 3;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    width = 4;
  } else {
    *error_len = 1;
    return 0;
  }
  if (i + 1 >= n) return -static_cast<int>(n - i);
  const unsigned char b1 = p[i + 1];
  bool second_ok;
  switch (b0) {
    case 0xE0: second_ok = b1 >= 0xA0 && b1 <= 0xBF; break;
    case 0xED: second_ok = b1 >= 0x80 && b1 <= 0x9F; break;
    case 0xF0: second_ok = b1 >= 0x90 && b1 <= 0xBF; break;
    case 0xF4: second_ok = b1 >= 0x80 && b1 <= 0x8F; break;
    default: second_ok = IsCont(b1);
  }
  if (!second_ok) {
    *error_len = 1;
    return 0;
  }
  for (int k = 2; k < width; ++k) {
    if (i + k >= n) return -static_cast<int>(n - i);
    if (!IsCont(p[i + k])) {
      *error_len = k;
      return 0;
    }
  }
  return width;
}

}  // namespace

bool IsWellFormedUtf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    // ASCII fast path, 8 bytes at a time.
    while (i + 8 <= n) {
      uint64_t w;
      __builtin_memcpy(&w, p + i, 8);
      if (w & 0x8080808080808080ULL) break;
      i += 8;
    }
    if (i >= n) break;
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    int error_len = 0;
    const int len = SequenceAt(s, i, &error_len);
    if (len <= 0) return false;
    i += len;
  }
  return true;
}

char32_t DecodeUtf8(std::string_view s, size_t* i) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data()) + *i;
  const unsigned char b0 = p[0];
  if (b0 < 0x80) {
    *i += 1;
    return b0;
  }
  if (b0 < 0xE0) {
    *i += 2;
    return (char32_t{b0 & 0x1Fu} << 6) | (p[1] & 0x3F);
  }
  if (b0 < 0xF0) {
    *i += 3;
    return (char32_t{b0 & 0x0Fu} << 12) | (char32_t{p[1] & 0x3Fu} << 6) | (p[2] & 0x3F);
  }
  *i += 4;
  return (char32_t{b0 & 0x07u} << 18) | (char32_t{p[1] & 0x3Fu} << 12) | (char32_t{p[2] & 0x3Fu} << 6) |
         (p[3] & 0x3F);
}

char32_t DecodeLastUtf8(std::string_view s, size_t* start) {
  size_t i = s.size() - 1;
  while (i > 0 && IsCont(static_cast<unsigned char>(s[i]))) --i;
  *start = i;
  size_t j = i;
  return DecodeUtf8(s, &j);
}

void AppendUtf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";

size_t AppendUtf8LossyPrefix(std::string_view bytes, std::string* out) {
  size_t i = 0;
  size_t run = 0;  // start of the pending run of valid bytes
  while (i < bytes.size()) {
    if (static_cast<unsigned char>(bytes[i]) < 0x80) {
      ++i;
      continue;
    }
    int error_len = 0;
    const int len = SequenceAt(bytes, i, &error_len);
    if (len > 0) {
      i += len;
      continue;
    }
    out->append(bytes.data() + run, i - run);
    if (len < 0) return i;  // incomplete at the end: held back
    out->append(kReplacement);
    i += error_len;
    run = i;
  }
  out->append(bytes.data() + run, i - run);
  return i;
}

void AppendUtf8Lossy(std::string_view bytes, std::string* out) {
  const size_t used = AppendUtf8LossyPrefix(bytes, out);
  if (used < bytes.size()) out->append(kReplacement);
}

bool IsWhitespace(char32_t c) {
  if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0D);
  switch (c) {
    case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
      return true;
    default:
      return c >= 0x2000 && c <= 0x200A;
  }
}

bool IsWordChar(char32_t c) {
  if (c < 0x80) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  }
  if (c == 0x200C || c == 0x200D) return true;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_PC:
      return true;
    default:
      return false;
  }
}

bool IsNumeric(char32_t c) {
  if (c < 0x80) return c >= '0' && c <= '9';
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
      return true;
    default:
      return false;
  }
}

}  // namespace stepserve::text
