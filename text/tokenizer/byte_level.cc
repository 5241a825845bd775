#include "text/tokenizer/byte_level.h"

#include "text/tokenizer/unicode.h"

namespace stepserve::text {

const ByteLevelTable& GetByteLevelTable() {
  static const ByteLevelTable* table = [] {
    auto* t = new ByteLevelTable();
    t->char_to_byte.fill(-1);
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      const char32_t c = printable ? static_cast<char32_t>(b) : next++;
      t->byte_to_char[b] = c;
      AppendUtf8(c, &t->byte_to_utf8[b]);
      t->char_to_byte[c] = static_cast<int16_t>(b);
    }
    return t;
  }();
  return *table;
}

bool ByteLevelTokenToBytes(std::string_view token, std::string* out) {
  const ByteLevelTable& t = GetByteLevelTable();
  const size_t mark = out->size();
  size_t i = 0;
  while (i < token.size()) {
    const char32_t c = DecodeUtf8(token, &i);
    if (c >= t.char_to_byte.size() || t.char_to_byte[c] < 0) {
      out->resize(mark);
      return false;
    }
    out->push_back(static_cast<char>(t.char_to_byte[c]));
  }
  return true;
}

}  // namespace stepserve::text
