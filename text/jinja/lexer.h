// Splits a template into text and tag tokens, applying Jinja's whitespace control: `{%-`/`-%}` strip,
// `{%+`/`+%}` keep, and the trim_blocks / lstrip_blocks options (both on in transformers'
// apply_chat_template). A single trailing newline of the template is dropped (keep_trailing_newline=False).
#ifndef STEPSERVE_TEXT_JINJA_LEXER_H_
#define STEPSERVE_TEXT_JINJA_LEXER_H_

#include <string>
#include <string_view>
#include <vector>

namespace stepserve::text::jinja {

struct Token {
  enum class Type {
    kText,        // literal template text
    kVarBegin,    // {{
    kVarEnd,      // }}
    kBlockBegin,  // {%
    kBlockEnd,    // %}
    kName,
    kString,  // value: the unescaped string
    kInt,
    kFloat,
    kOperator,  // value: + - * / // % ** ~ == != < <= > >= = ( ) [ ] { } , . : |
    kEnd,
  };
  Type type;
  std::string value;
  int line;
  int col;
};

struct LexOptions {
  bool trim_blocks = true;
  bool lstrip_blocks = true;
};

// Throws JinjaError (with the line and column) on a lexical error.
std::vector<Token> Tokenize(std::string_view source, const LexOptions& options = {});

}  // namespace stepserve::text::jinja

#endif  // STEPSERVE_TEXT_JINJA_LEXER_H_
