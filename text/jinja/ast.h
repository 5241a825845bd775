// The syntax tree of a parsed template: expressions and statements, each with its source position.
#ifndef STEPSERVE_TEXT_JINJA_AST_H_
#define STEPSERVE_TEXT_JINJA_AST_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "text/jinja/value.h"

namespace stepserve::text::jinja {

struct Pos {
  int line = 0;
  int col = 0;
};

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct ArgExprs {
  std::vector<ExprPtr> positional;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
};

struct Expr {
  enum class Type {
    kLiteral,   // literal
    kName,      // name
    kList,      // items
    kTuple,     // items
    kDict,      // pairs
    kGetAttr,   // a.name
    kGetItem,   // a[b]
    kSlice,     // a[b:c:d] (absent parts are null)
    kCall,      // a(args)
    kFilter,    // a | name(args); a is null inside a {% filter %} block
    kTest,      // a is [not] name(args); negated
    kNeg,       // -a
    kPos,       // +a
    kNot,       // not a
    kBinary,    // a op b: + - * / // % **
    kConcat,    // items joined with ~
    kCompare,   // a (op operand)+: == != < <= > >= in notin
    kAnd,       // a and b
    kOr,        // a or b
    kCondExpr,  // b if a else c (c may be null)
  };
  Type type;
  Pos pos;
  Value literal;
  std::string name;  // name, attribute, filter, test or binary operator
  bool negated = false;
  ExprPtr a, b, c;
  std::vector<ExprPtr> items;
  std::vector<std::pair<ExprPtr, ExprPtr>> pairs;
  std::vector<std::pair<std::string, ExprPtr>> ops;  // kCompare
  ArgExprs args;
};

struct Node;
using NodePtr = std::unique_ptr<Node>;
using Body = std::vector<NodePtr>;

struct MacroDef {
  std::string name;
  std::vector<std::pair<std::string, ExprPtr>> params;  // default may be null
  Body body;
};

struct Node {
  enum class Type {
    kText,         // text
    kOutput,       // {{ expr }}
    kIf,           // branches (condition, body), else_body
    kFor,          // targets, expr (iterable), cond (filter, may be null), body, else_body
    kSet,          // target (name, tuple of names, or ns.attr), expr
    kSetBlock,     // targets[0] = name, body, filter (may be null)
    kMacro,        // macro
    kCallBlock,    // macro (the caller: params + body), expr (the call)
    kFilterBlock,  // filter (a kFilter chain applied to the rendered body), body
    kBreak,
    kContinue,
    kScope,        // body (transformers' {% generation %} is rendered as its body)
  };
  Type type;
  Pos pos;
  std::string text;
  ExprPtr expr;
  ExprPtr cond;
  ExprPtr target;
  ExprPtr filter;
  std::vector<std::string> targets;
  std::vector<std::pair<ExprPtr, Body>> branches;
  Body body;
  Body else_body;
  std::shared_ptr<MacroDef> macro;
};

}  // namespace stepserve::text::jinja

#endif  // STEPSERVE_TEXT_JINJA_AST_H_
