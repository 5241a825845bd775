// GPT-2's byte-to-unicode table: every byte as a printable character (bytes 33-126, 161-172 and 174-255
// as themselves, the others as U+0100 onwards, in byte order).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace stepserve::text {

struct ByteLevelTable {
  std::array<char32_t, 256> byte_to_char;
  std::array<std::string, 256> byte_to_utf8;  // byte_to_char as UTF-8 (1 or 2 bytes)
  std::array<int16_t, 324> char_to_byte;      // -1 when the character is no byte's
};

const ByteLevelTable& GetByteLevelTable();

// The bytes a byte-level token stands for; false (and `out` unchanged) when some character of `token` is
// outside the table.
bool ByteLevelTokenToBytes(std::string_view token, std::string* out);

}  // namespace stepserve::text
