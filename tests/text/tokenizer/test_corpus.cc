#include "test_corpus.h"

#include <random>

namespace stepserve::text::testing {
namespace {

const std::vector<std::string>& Fragments() {
  static const std::vector<std::string> fragments = {
      "The quick brown fox jumps over the lazy dog.",
      " Hello, world! It's a test; they'll see what we've done, I'd say. ",
      "DON'T SHOUT. We'RE fine, You'Ve Been Warned",
      "int main(int argc, char** argv) {\n  return argc > 1 ? 0 : 1;\n}\n",
      "def f(x):\n\treturn x ** 2  # square\n\n",
      "    if (a && b || !c) { x += 0x1F; y <<= 3; }\n",
      "for (auto& [k, v] : map) std::cout << k << \"=\" << v << '\\n';",
      "https://example.com/path?query=1&other=two#frag",
      "{\"key\": [1, 2.5, -3e10, null, true], \"nested\": {\"a\": \"b\"}}",
      "我们今天去公园散步，天气非常好。",
      "日本語のテキストとカタカナ、ひらがなを混ぜる。東京タワー",
      "한국어 문장도 포함합니다.",
      "Ελληνικά και русский текст, עברית, العربية, हिन्दी, ไทย",
      "emoji: 😀😃🎉👍🏽 👨‍👩‍👧‍👦 🇫🇷🇯🇵 ❤️ ✨🔥",
      "combining: e\xCC\x81 a\xCC\x8A n\xCC\x83 \xE1\x84\x80\xE1\x85\xA1 caf\xC3\xA9 cafe\xCC\x81",
      "nfkc: \xEF\xAC\x81ne \xEF\xBC\xA1\xEF\xBC\xA2\xEF\xBC\xA3 \xE2\x91\xA0 \xE3\x8E\x8F x\xC2\xB2 \xE2\x84\xAB \xE2\x85\xA8",
      "digits 1234567890 3.14159 2024-06-30 1,000,000 ٣٤٥ ४५६",
      "   leading and trailing spaces   ",
      "tabs\tand\t\ttabs\t",
      "crlf\r\nlines\r\n\r\nmore\n\n\nlines\r",
      "nbsp\xC2\xA0here\xE3\x80\x80ideographic space\xE2\x80\x83" "em",
      "\n\n\n    \n\t \r\n ",
      "MiXeD CaSe WoRdS and_snake_case and camelCaseWords",
      "symbols: @#$%^&*()_+-=[]{}|;':\",./<>?`~ \xC2\xA9\xC2\xAE\xE2\x84\xA2 \xE2\x82\xAC\xC2\xA3\xC2\xA5",
      "<think>reasoning here</think> <tool_call>{\"name\": \"x\"}</tool_call>",
      "<|im_start|>user\nhello<|im_end|>",
      "a", " ", "\n", "''", "'s 'S 'll 'LL",
  };
  return fragments;
}

}  // namespace

std::string MixedText(size_t bytes, uint32_t seed) {
  std::mt19937 rng(seed);
  const auto& f = Fragments();
  std::string out;
  while (out.size() < bytes) {
    out += f[rng() % f.size()];
    switch (rng() % 6) {
      case 0: out += " "; break;
      case 1: out += "\n"; break;
      case 2: out += "  "; break;
      default: break;
    }
  }
  return out;
}

std::vector<std::string> TokenizerCorpus(const std::vector<std::string>& special_tokens, uint32_t seed) {
  std::vector<std::string> texts = Fragments();
  texts.push_back("");
  std::mt19937 rng(seed);
  // Special tokens inside text: at the start, the end, next to spaces and words, back to back.
  for (size_t i = 0; i < special_tokens.size() && i < 12; ++i) {
    const std::string& s = special_tokens[rng() % special_tokens.size()];
    texts.push_back(s + "Hello" + s);
    texts.push_back("before " + s + " after  " + s + s + "\n" + s);
    texts.push_back("x" + s + "y");
  }
  // Random mixes of fragments (and special tokens).
  const auto& f = Fragments();
  for (int i = 0; i < 60; ++i) {
    std::string t;
    const int parts = 1 + static_cast<int>(rng() % 8);
    for (int p = 0; p < parts; ++p) {
      if (!special_tokens.empty() && rng() % 5 == 0) {
        t += special_tokens[rng() % special_tokens.size()];
      } else {
        t += f[rng() % f.size()];
      }
      if (rng() % 3 == 0) t += std::string(rng() % 4, " \n\t"[rng() % 3]);
    }
    texts.push_back(t);
  }
  // Long inputs (100 KB): mixed, one long word, a long CJK run, long whitespace and digit runs.
  texts.push_back(MixedText(100 * 1024, seed + 1));
  std::string word, cjk, spaces, digits;
  while (word.size() < 100 * 1024) word += "abcdefghij";
  while (cjk.size() < 100 * 1024) cjk += "我们今天去公园散步天气非常好";
  spaces = std::string(50 * 1024, ' ') + "x" + std::string(50 * 1024, '\n') + "\r\n\t";
  while (digits.size() < 100 * 1024) digits += "0123456789";
  texts.push_back(word);
  texts.push_back(cjk);
  texts.push_back(spaces);
  texts.push_back(digits);
  return texts;
}

}  // namespace stepserve::text::testing
