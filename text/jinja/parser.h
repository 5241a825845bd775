// Parses lexer tokens into a statement tree, following jinja2's grammar and operator precedence.
#ifndef STEPSERVE_TEXT_JINJA_PARSER_H_
#define STEPSERVE_TEXT_JINJA_PARSER_H_

#include <vector>

#include "text/jinja/ast.h"
#include "text/jinja/lexer.h"

namespace stepserve::text::jinja {

// Throws JinjaError naming the line and column of the offending token.
Body ParseTokens(const std::vector<Token>& tokens);

}  // namespace stepserve::text::jinja

#endif  // STEPSERVE_TEXT_JINJA_PARSER_H_
