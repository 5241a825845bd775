#include "text/jinja/lexer.h"

#include <algorithm>
#include <cctype>

#include "text/jinja/value.h"

namespace stepserve::text::jinja {
namespace {

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

class Lexer {
 public:
  Lexer(std::string_view source, const LexOptions& options) : src_(source), options_(options) {
    // keep_trailing_newline=False: one trailing newline is not part of the output.
    if (!src_.empty() && src_.back() == '\n') {
      src_.remove_suffix(1);
      if (!src_.empty() && src_.back() == '\r') src_.remove_suffix(1);
    }
  }

  std::vector<Token> Run() {
    size_t pos = 0;
    bool strip_next_text = false;  // the previous tag ended with '-'
    bool trim_next_newline = false;  // the previous block/comment tag ended without '+' (trim_blocks)
    while (pos <= src_.size()) {
      size_t start = FindTagStart(pos);
      std::string text(src_.substr(pos, start - pos));
      if (strip_next_text) {
        size_t k = 0;
        while (k < text.size() && IsSpace(text[k])) ++k;
        text.erase(0, k);
      } else if (trim_next_newline) {
        if (!text.empty() && text[0] == '\n') {
          text.erase(0, 1);
        } else if (text.size() >= 2 && text[0] == '\r' && text[1] == '\n') {
          text.erase(0, 2);
        }
      }
      if (start == src_.size()) {
        Emit(Token::Type::kText, std::move(text), pos);
        break;
      }
      char kind = src_[start + 1];  // '{', '%' or '#'
      char modifier = start + 2 < src_.size() ? src_[start + 2] : '\0';
      if (modifier == '-') {
        while (!text.empty() && IsSpace(text.back())) text.pop_back();
      } else if (options_.lstrip_blocks && kind != '{' && modifier != '+') {
        // Strip spaces and tabs between the start of the line and a block or comment tag.
        size_t k = start;
        while (k > pos && (src_[k - 1] == ' ' || src_[k - 1] == '\t')) --k;
        if (k == 0 || src_[k - 1] == '\n') {
          size_t n = start - k;
          text.resize(text.size() >= n ? text.size() - n : 0);
        }
      }
      Emit(Token::Type::kText, std::move(text), pos);
      size_t inner = start + 2 + ((modifier == '-' || modifier == '+') ? 1 : 0);
      char end_modifier = '\0';
      if (kind == '#') {
        size_t end = src_.find("#}", inner);
        if (end == std::string_view::npos) Fail("unterminated comment", start);
        end_modifier = end > inner ? src_[end - 1] : '\0';
        pos = end + 2;
      } else if (kind == '%' && IsRawBlock(inner)) {
        pos = LexRaw(start, inner, &end_modifier);
      } else {
        pos = LexTag(start, inner, kind, &end_modifier);
      }
      strip_next_text = end_modifier == '-';
      trim_next_newline = options_.trim_blocks && kind != '{' && end_modifier != '+';
    }
    tokens_.push_back(Token{Token::Type::kEnd, "", LineOf(src_.size()), ColOf(src_.size())});
    return std::move(tokens_);
  }

 private:
  size_t FindTagStart(size_t pos) const {
    while (true) {
      size_t k = src_.find('{', pos);
      if (k == std::string_view::npos || k + 1 >= src_.size()) return src_.size();
      char c = src_[k + 1];
      if (c == '{' || c == '%' || c == '#') return k;
      pos = k + 1;
    }
  }

  int LineOf(size_t offset) const {
    if (newlines_.empty() && !newlines_scanned_) {
      for (size_t k = 0; k < src_.size(); ++k) {
        if (src_[k] == '\n') newlines_.push_back(k);
      }
      newlines_scanned_ = true;
    }
    return static_cast<int>(std::lower_bound(newlines_.begin(), newlines_.end(), offset) - newlines_.begin()) + 1;
  }
  int ColOf(size_t offset) const {
    size_t nl = offset == 0 ? std::string_view::npos : src_.rfind('\n', offset - 1);
    return static_cast<int>(nl == std::string_view::npos ? offset + 1 : offset - nl);
  }

  [[noreturn]] void Fail(const std::string& message, size_t offset) const {
    throw JinjaError(message, LineOf(offset), ColOf(offset));
  }

  void Emit(Token::Type type, std::string value, size_t offset) {
    if (type == Token::Type::kText && value.empty()) return;
    tokens_.push_back(Token{type, std::move(value), LineOf(offset), ColOf(offset)});
  }

  size_t SkipSpaces(size_t k) const {
    while (k < src_.size() && IsSpace(src_[k])) ++k;
    return k;
  }

  bool MatchWord(size_t k, std::string_view word) const {
    if (src_.substr(k, word.size()) != word) return false;
    size_t e = k + word.size();
    return e >= src_.size() || !(std::isalnum(static_cast<unsigned char>(src_[e])) || src_[e] == '_');
  }

  // Matches `raw` then optional '-'/'+' and `%}` starting at k; returns the offset after `%}` or npos.
  size_t MatchTagRest(size_t k, std::string_view word, char* end_modifier) const {
    k = SkipSpaces(k);
    if (!MatchWord(k, word)) return std::string_view::npos;
    k = SkipSpaces(k + word.size());
    char m = '\0';
    if (k < src_.size() && (src_[k] == '-' || src_[k] == '+')) m = src_[k++];
    if (src_.substr(k, 2) != "%}") return std::string_view::npos;
    if (end_modifier != nullptr) *end_modifier = m;
    return k + 2;
  }

  bool IsRawBlock(size_t inner) const { return MatchTagRest(inner, "raw", nullptr) != std::string_view::npos; }

  size_t LexRaw(size_t start, size_t inner, char* end_modifier) {
    char open_modifier = '\0';
    size_t body = MatchTagRest(inner, "raw", &open_modifier);
    size_t search = body;
    while (true) {
      size_t k = src_.find("{%", search);
      if (k == std::string_view::npos) Fail("missing {% endraw %} for this raw block", start);
      size_t in = k + 2;
      char left = '\0';
      if (in < src_.size() && (src_[in] == '-' || src_[in] == '+')) left = src_[in++];
      size_t after = MatchTagRest(in, "endraw", end_modifier);
      if (after == std::string_view::npos) {
        search = k + 2;
        continue;
      }
      std::string text(src_.substr(body, k - body));
      if (open_modifier == '-') {
        size_t j = 0;
        while (j < text.size() && IsSpace(text[j])) ++j;
        text.erase(0, j);
      } else if (options_.trim_blocks && open_modifier != '+' && !text.empty() && text[0] == '\n') {
        text.erase(0, 1);
      }
      if (left == '-') {
        while (!text.empty() && IsSpace(text.back())) text.pop_back();
      } else if (options_.lstrip_blocks && left != '+') {
        size_t j = text.size();
        while (j > 0 && (text[j - 1] == ' ' || text[j - 1] == '\t')) --j;
        if (j > 0 && text[j - 1] == '\n') text.resize(j);
      }
      Emit(Token::Type::kText, std::move(text), body);
      return after;
    }
  }

  size_t LexTag(size_t start, size_t k, char kind, char* end_modifier) {
    Emit(kind == '{' ? Token::Type::kVarBegin : Token::Type::kBlockBegin, "", start);
    const char close = kind == '{' ? '}' : '%';
    int depth = 0;
    while (true) {
      k = SkipSpaces(k);
      if (k >= src_.size()) Fail(kind == '{' ? "unterminated '{{'" : "unterminated '{%'", start);
      char c = src_[k];
      // The tag's end: "}}" / "%}" optionally preceded by '-' or '+', outside brackets.
      if (depth == 0) {
        size_t e = k;
        char m = '\0';
        if ((c == '-' || c == '+') && k + 1 < src_.size() && src_[k + 1] == close) {
          m = c;
          ++e;
        }
        if (src_[e] == close && e + 1 < src_.size() && src_[e + 1] == '}') {
          *end_modifier = m;
          Emit(kind == '{' ? Token::Type::kVarEnd : Token::Type::kBlockEnd, "", k);
          return e + 2;
        }
      }
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t e = k;
        while (e < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[e])) || src_[e] == '_')) ++e;
        Emit(Token::Type::kName, std::string(src_.substr(k, e - k)), k);
        k = e;
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        k = LexNumber(k);
      } else if (c == '\'' || c == '"') {
        k = LexString(k);
      } else {
        static const char* const kOperators[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~",
                                                 "<",  ">",  "=",  "(",  ")",  "[",  "]", "{", "}", ",", ".", ":",
                                                 "|"};
        bool matched = false;
        for (const char* op : kOperators) {
          std::string_view o(op);
          if (src_.substr(k, o.size()) == o) {
            if (o == "(" || o == "[" || o == "{") ++depth;
            if ((o == ")" || o == "]" || o == "}") && depth > 0) --depth;
            Emit(Token::Type::kOperator, std::string(o), k);
            k += o.size();
            matched = true;
            break;
          }
        }
        if (!matched) Fail(std::string("unexpected character '") + c + "'", k);
      }
    }
  }

  size_t LexNumber(size_t k) {
    size_t e = k;
    auto digits = [&] {
      while (e < src_.size() && (std::isdigit(static_cast<unsigned char>(src_[e])) || src_[e] == '_')) ++e;
    };
    digits();
    bool is_float = false;
    // "1.5" is a float; "x.0.1"-style attribute chains (previous token '.') stay integers.
    bool after_dot = !tokens_.empty() && tokens_.back().type == Token::Type::kOperator && tokens_.back().value == ".";
    if (!after_dot && e + 1 < src_.size() && src_[e] == '.' && std::isdigit(static_cast<unsigned char>(src_[e + 1]))) {
      is_float = true;
      ++e;
      digits();
    }
    if (!after_dot && e < src_.size() && (src_[e] == 'e' || src_[e] == 'E')) {
      size_t x = e + 1;
      if (x < src_.size() && (src_[x] == '+' || src_[x] == '-')) ++x;
      if (x < src_.size() && std::isdigit(static_cast<unsigned char>(src_[x]))) {
        is_float = true;
        e = x;
        digits();
      }
    }
    std::string text;
    for (size_t j = k; j < e; ++j) {
      if (src_[j] != '_') text.push_back(src_[j]);
    }
    Emit(is_float ? Token::Type::kFloat : Token::Type::kInt, text, k);
    return e;
  }

  static int HexValue(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  // Python string literal escapes (jinja2 decodes literals with "unicode-escape").
  size_t LexString(size_t k) {
    char quote = src_[k];
    std::string out;
    size_t e = k + 1;
    while (true) {
      if (e >= src_.size()) Fail("unterminated string literal", k);
      char c = src_[e];
      if (c == quote) break;
      if (c != '\\') {
        out.push_back(c);
        ++e;
        continue;
      }
      if (e + 1 >= src_.size()) Fail("unterminated string literal", k);
      char n = src_[e + 1];
      e += 2;
      switch (n) {
        case 'n': out.push_back('\n'); break;
        case 't': out.push_back('\t'); break;
        case 'r': out.push_back('\r'); break;
        case 'b': out.push_back('\b'); break;
        case 'f': out.push_back('\f'); break;
        case 'v': out.push_back('\v'); break;
        case 'a': out.push_back('\a'); break;
        case '\\': out.push_back('\\'); break;
        case '\'': out.push_back('\''); break;
        case '"': out.push_back('"'); break;
        case '\n': break;  // line continuation
        case 'x':
        case 'u':
        case 'U': {
          size_t len = n == 'x' ? 2 : (n == 'u' ? 4 : 8);
          char32_t cp = 0;
          for (size_t j = 0; j < len; ++j) {
            int h = e + j < src_.size() ? HexValue(src_[e + j]) : -1;
            if (h < 0) Fail(std::string("truncated \\") + n + " escape in string literal", e - 2);
            cp = cp * 16 + static_cast<char32_t>(h);
          }
          e += len;
          if (cp > 0x10ffff) Fail("invalid \\U escape in string literal", e - len - 2);
          AppendUtf8(cp, &out);
          break;
        }
        default:
          if (n >= '0' && n <= '7') {
            char32_t cp = static_cast<char32_t>(n - '0');
            for (int j = 0; j < 2 && e < src_.size() && src_[e] >= '0' && src_[e] <= '7'; ++j, ++e) {
              cp = cp * 8 + static_cast<char32_t>(src_[e] - '0');
            }
            AppendUtf8(cp, &out);
          } else {
            out.push_back('\\');  // unknown escapes stay as written, as in Python
            out.push_back(n);
          }
      }
    }
    Emit(Token::Type::kString, std::move(out), k);
    return e + 1;
  }

  std::string_view src_;
  LexOptions options_;
  std::vector<Token> tokens_;
  mutable std::vector<size_t> newlines_;
  mutable bool newlines_scanned_ = false;
};

}  // namespace

std::vector<Token> Tokenize(std::string_view source, const LexOptions& options) {
  return Lexer(source, options).Run();
}

}  // namespace stepserve::text::jinja
