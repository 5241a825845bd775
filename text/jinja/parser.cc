#include "text/jinja/parser.h"

#include <cerrno>
#include <cstdlib>
#include <initializer_list>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace stepserve::text::jinja {
namespace {

constexpr int kMaxNesting = 100;  // expression and block nesting; deeper input would risk the stack

class Parser {
 public:
  explicit Parser(const std::vector<Token>& tokens) : t_(tokens) {}

  Body ParseTemplate() {
    Body body = ParseBody({});
    if (Cur().type != Token::Type::kEnd) {
      Fail(absl::StrCat("unexpected '", PeekBlockName(), "' tag"));
    }
    return body;
  }

 private:
  // ---- token helpers ----
  const Token& Cur() const { return t_[p_]; }
  const Token& Peek(size_t n = 1) const { return t_[std::min(p_ + n, t_.size() - 1)]; }
  void Advance() {
    if (p_ + 1 < t_.size()) ++p_;
  }
  Pos PosOf(const Token& t) const { return Pos{t.line, t.col}; }

  [[noreturn]] void Fail(const std::string& message) const { FailAt(message, Cur()); }
  [[noreturn]] void FailAt(const std::string& message, const Token& t) const {
    throw JinjaError(message, t.line, t.col);
  }

  static std::string Describe(const Token& t) {
    switch (t.type) {
      case Token::Type::kText: return "template text";
      case Token::Type::kVarBegin: return "'{{'";
      case Token::Type::kVarEnd: return "'}}'";
      case Token::Type::kBlockBegin: return "'{%'";
      case Token::Type::kBlockEnd: return "'%}'";
      case Token::Type::kName: return "'" + t.value + "'";
      case Token::Type::kString: return "string literal";
      case Token::Type::kInt:
      case Token::Type::kFloat: return "number " + t.value;
      case Token::Type::kOperator: return "'" + t.value + "'";
      case Token::Type::kEnd: return "end of template";
    }
    return "token";
  }

  bool IsOp(std::string_view op) const { return Cur().type == Token::Type::kOperator && Cur().value == op; }
  bool IsName(std::string_view name) const { return Cur().type == Token::Type::kName && Cur().value == name; }
  bool SkipOp(std::string_view op) {
    if (!IsOp(op)) return false;
    Advance();
    return true;
  }
  bool SkipName(std::string_view name) {
    if (!IsName(name)) return false;
    Advance();
    return true;
  }
  void ExpectOp(std::string_view op) {
    if (!SkipOp(op)) Fail(absl::StrCat("expected '", std::string(op), "', got ", Describe(Cur())));
  }
  std::string ExpectName(std::string_view what) {
    if (Cur().type != Token::Type::kName) Fail(absl::StrCat("expected ", std::string(what), ", got ", Describe(Cur())));
    std::string name = Cur().value;
    Advance();
    return name;
  }
  void ExpectBlockEnd() {
    if (Cur().type != Token::Type::kBlockEnd) Fail(absl::StrCat("expected '%}', got ", Describe(Cur())));
    Advance();
  }

  std::string PeekBlockName() const {
    if (Cur().type == Token::Type::kBlockBegin && Peek().type == Token::Type::kName) return Peek().value;
    return Describe(Cur());
  }

  struct DepthGuard {
    explicit DepthGuard(Parser* p) : p(p) {
      if (++p->depth_ > kMaxNesting) p->Fail("template nesting is too deep");
    }
    ~DepthGuard() { --p->depth_; }
    Parser* p;
  };

  ExprPtr NewExpr(Expr::Type type, const Token& at) {
    auto e = std::make_unique<Expr>();
    e->type = type;
    e->pos = PosOf(at);
    return e;
  }

  // ---- statements ----
  // Parses until a block tag whose name is in `end_names` (left unconsumed, positioned at its '{%') or the end.
  Body ParseBody(std::initializer_list<std::string_view> end_names) {
    DepthGuard guard(this);
    Body body;
    while (true) {
      const Token& t = Cur();
      if (t.type == Token::Type::kEnd) return body;
      if (t.type == Token::Type::kText) {
        auto n = std::make_unique<Node>();
        n->type = Node::Type::kText;
        n->pos = PosOf(t);
        n->text = t.value;
        body.push_back(std::move(n));
        Advance();
      } else if (t.type == Token::Type::kVarBegin) {
        Advance();
        auto n = std::make_unique<Node>();
        n->type = Node::Type::kOutput;
        n->pos = PosOf(t);
        n->expr = ParseTuple(true);
        if (Cur().type != Token::Type::kVarEnd) Fail(absl::StrCat("expected '}}', got ", Describe(Cur())));
        Advance();
        body.push_back(std::move(n));
      } else if (t.type == Token::Type::kBlockBegin) {
        const Token& name = Peek();
        if (name.type != Token::Type::kName) FailAt("expected a statement name after '{%'", name);
        for (std::string_view end : end_names) {
          if (name.value == end) return body;
        }
        Advance();
        body.push_back(ParseStatement());
      } else {
        Fail(absl::StrCat("unexpected ", Describe(t)));
      }
    }
  }

  // After ParseBody stopped at one of the end tags: consumes "{% name" and returns the name.
  std::string EnterTag(const Token& opener, std::string_view construct) {
    if (Cur().type != Token::Type::kBlockBegin) {
      FailAt(absl::StrCat("unclosed '", std::string(construct), "' (opened on line ", opener.line, ") at end of template"), opener);
    }
    Advance();
    std::string name = Cur().value;
    Advance();
    return name;
  }

  NodePtr ParseStatement() {
    const Token& kw = Cur();
    std::string name = kw.value;
    Advance();
    auto n = std::make_unique<Node>();
    n->pos = PosOf(kw);
    if (name == "if") {
      n->type = Node::Type::kIf;
      ExprPtr cond = ParseExpression();
      ExpectBlockEnd();
      while (true) {
        Body body = ParseBody({"elif", "else", "endif"});
        n->branches.emplace_back(std::move(cond), std::move(body));
        std::string tag = EnterTag(kw, "if");
        if (tag == "elif") {
          cond = ParseExpression();
          ExpectBlockEnd();
          continue;
        }
        if (tag == "else") {
          ExpectBlockEnd();
          n->else_body = ParseBody({"endif"});
          EnterTag(kw, "if");
        }
        ExpectBlockEnd();
        break;
      }
    } else if (name == "for") {
      n->type = Node::Type::kFor;
      do {
        n->targets.push_back(ExpectName("a loop variable name"));
      } while (SkipOp(","));
      if (!SkipName("in")) Fail(absl::StrCat("expected 'in' in for loop, got ", Describe(Cur())));
      n->expr = ParseTuple(false);
      if (SkipName("if")) n->cond = ParseExpression();
      if (IsName("recursive")) Fail("recursive for loops are not supported");
      ExpectBlockEnd();
      n->body = ParseBody({"else", "endfor"});
      if (EnterTag(kw, "for") == "else") {
        ExpectBlockEnd();
        n->else_body = ParseBody({"endfor"});
        EnterTag(kw, "for");
      }
      ExpectBlockEnd();
    } else if (name == "set") {
      const Token& target_token = Cur();
      std::string first = ExpectName("a variable name");
      if (IsOp(".")) {
        Advance();
        n->target = NewExpr(Expr::Type::kGetAttr, target_token);
        n->target->a = NewExpr(Expr::Type::kName, target_token);
        n->target->a->name = first;
        n->target->name = ExpectName("an attribute name");
      } else {
        n->targets.push_back(first);
        while (SkipOp(",")) n->targets.push_back(ExpectName("a variable name"));
      }
      if (SkipOp("=")) {
        n->type = Node::Type::kSet;
        n->expr = ParseTuple(true);
        ExpectBlockEnd();
      } else {
        if (n->target != nullptr || n->targets.size() != 1) Fail("expected '=' in set statement");
        n->type = Node::Type::kSetBlock;
        if (IsOp("|")) n->filter = ParseFilterChain(nullptr);
        ExpectBlockEnd();
        n->body = ParseBody({"endset"});
        EnterTag(kw, "set");
        ExpectBlockEnd();
      }
    } else if (name == "macro") {
      n->type = Node::Type::kMacro;
      n->macro = std::make_shared<MacroDef>();
      n->macro->name = ExpectName("a macro name");
      ParseParams(n->macro.get());
      ExpectBlockEnd();
      n->macro->body = ParseBody({"endmacro"});
      EnterTag(kw, "macro");
      ExpectBlockEnd();
    } else if (name == "call") {
      n->type = Node::Type::kCallBlock;
      n->macro = std::make_shared<MacroDef>();
      n->macro->name = "caller";
      if (IsOp("(")) ParseParams(n->macro.get());
      n->expr = ParseExpression();
      if (n->expr->type != Expr::Type::kCall) Fail("expected a call in the call block");
      ExpectBlockEnd();
      n->macro->body = ParseBody({"endcall"});
      EnterTag(kw, "call");
      ExpectBlockEnd();
    } else if (name == "filter") {
      n->type = Node::Type::kFilterBlock;
      n->filter = ParseFilterChain(nullptr, /*leading_pipe=*/false);
      ExpectBlockEnd();
      n->body = ParseBody({"endfilter"});
      EnterTag(kw, "filter");
      ExpectBlockEnd();
    } else if (name == "break" || name == "continue") {
      n->type = name == "break" ? Node::Type::kBreak : Node::Type::kContinue;
      ExpectBlockEnd();
    } else if (name == "generation") {
      n->type = Node::Type::kScope;
      ExpectBlockEnd();
      n->body = ParseBody({"endgeneration"});
      EnterTag(kw, "generation");
      ExpectBlockEnd();
    } else {
      static const char* const kEndTags[] = {"endif", "endfor", "endset", "endmacro", "endcall", "endfilter",
                                             "elif",  "else",   "endraw", "endgeneration"};
      for (const char* end : kEndTags) {
        if (name == end) FailAt(absl::StrCat("unexpected '", name, "' tag"), kw);
      }
      FailAt(absl::StrCat("unknown or unsupported statement '", name, "'"), kw);
    }
    return n;
  }

  void ParseParams(MacroDef* macro) {
    ExpectOp("(");
    while (!IsOp(")")) {
      if (!macro->params.empty()) ExpectOp(",");
      if (IsOp(")")) break;
      std::string param = ExpectName("a parameter name");
      ExprPtr def;
      if (SkipOp("=")) def = ParseExpression();
      macro->params.emplace_back(std::move(param), std::move(def));
    }
    ExpectOp(")");
  }

  // ---- expressions ----
  // A bare tuple `a, b` (allowed in {{ }}, set values and for iterables) or a single expression.
  ExprPtr ParseTuple(bool with_condexpr) {
    const Token& start = Cur();
    ExprPtr first = with_condexpr ? ParseExpression() : ParseOr();
    if (!IsOp(",")) return first;
    auto tuple = NewExpr(Expr::Type::kTuple, start);
    tuple->items.push_back(std::move(first));
    while (SkipOp(",")) {
      if (Cur().type == Token::Type::kVarEnd || Cur().type == Token::Type::kBlockEnd || IsName("if")) break;
      tuple->items.push_back(with_condexpr ? ParseExpression() : ParseOr());
    }
    return tuple;
  }

  ExprPtr ParseExpression() {
    DepthGuard guard(this);
    ExprPtr expr = ParseOr();
    while (IsName("if")) {
      const Token& at = Cur();
      Advance();
      auto cond = NewExpr(Expr::Type::kCondExpr, at);
      cond->a = ParseOr();
      cond->b = std::move(expr);
      if (SkipName("else")) cond->c = ParseExpression();
      expr = std::move(cond);
    }
    return expr;
  }

  ExprPtr ParseOr() {
    ExprPtr left = ParseAnd();
    while (IsName("or")) {
      auto e = NewExpr(Expr::Type::kOr, Cur());
      Advance();
      e->a = std::move(left);
      e->b = ParseAnd();
      left = std::move(e);
    }
    return left;
  }

  ExprPtr ParseAnd() {
    ExprPtr left = ParseNot();
    while (IsName("and")) {
      auto e = NewExpr(Expr::Type::kAnd, Cur());
      Advance();
      e->a = std::move(left);
      e->b = ParseNot();
      left = std::move(e);
    }
    return left;
  }

  ExprPtr ParseNot() {
    if (IsName("not")) {
      DepthGuard guard(this);
      auto e = NewExpr(Expr::Type::kNot, Cur());
      Advance();
      e->a = ParseNot();
      return e;
    }
    return ParseCompare();
  }

  ExprPtr ParseCompare() {
    const Token& start = Cur();
    ExprPtr left = ParseMath1();
    ExprPtr cmp;
    while (true) {
      std::string op;
      if (Cur().type == Token::Type::kOperator &&
          (Cur().value == "==" || Cur().value == "!=" || Cur().value == "<" || Cur().value == "<=" ||
           Cur().value == ">" || Cur().value == ">=")) {
        op = Cur().value;
        Advance();
      } else if (IsName("in")) {
        op = "in";
        Advance();
      } else if (IsName("not") && Peek().type == Token::Type::kName && Peek().value == "in") {
        op = "notin";
        Advance();
        Advance();
      } else {
        break;
      }
      if (cmp == nullptr) {
        cmp = NewExpr(Expr::Type::kCompare, start);
        cmp->a = std::move(left);
      }
      cmp->ops.emplace_back(op, ParseMath1());
    }
    return cmp != nullptr ? std::move(cmp) : std::move(left);
  }

  ExprPtr Binary(std::string op, ExprPtr a, ExprPtr b, const Token& at) {
    auto e = NewExpr(Expr::Type::kBinary, at);
    e->name = std::move(op);
    e->a = std::move(a);
    e->b = std::move(b);
    return e;
  }

  ExprPtr ParseMath1() {
    ExprPtr left = ParseConcat();
    while (IsOp("+") || IsOp("-")) {
      const Token& at = Cur();
      std::string op = at.value;
      Advance();
      left = Binary(op, std::move(left), ParseConcat(), at);
    }
    return left;
  }

  ExprPtr ParseConcat() {
    const Token& start = Cur();
    ExprPtr first = ParseMath2();
    if (!IsOp("~")) return first;
    auto e = NewExpr(Expr::Type::kConcat, start);
    e->items.push_back(std::move(first));
    while (SkipOp("~")) e->items.push_back(ParseMath2());
    return e;
  }

  ExprPtr ParseMath2() {
    ExprPtr left = ParsePow();
    while (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%")) {
      const Token& at = Cur();
      std::string op = at.value;
      Advance();
      left = Binary(op, std::move(left), ParsePow(), at);
    }
    return left;
  }

  ExprPtr ParsePow() {
    ExprPtr left = ParseUnary(true);
    while (IsOp("**")) {
      const Token& at = Cur();
      Advance();
      left = Binary("**", std::move(left), ParseUnary(true), at);
    }
    return left;
  }

  ExprPtr ParseUnary(bool with_filter) {
    DepthGuard guard(this);
    ExprPtr node;
    if (IsOp("-") || IsOp("+")) {
      node = NewExpr(IsOp("-") ? Expr::Type::kNeg : Expr::Type::kPos, Cur());
      Advance();
      node->a = ParseUnary(false);
    } else {
      node = ParsePrimary();
    }
    node = ParsePostfix(std::move(node));
    if (with_filter) node = ParseFilterExpr(std::move(node));
    return node;
  }

  ExprPtr ParsePrimary() {
    const Token& t = Cur();
    switch (t.type) {
      case Token::Type::kName: {
        Advance();
        auto e = NewExpr(Expr::Type::kLiteral, t);
        if (t.value == "true" || t.value == "True") {
          e->literal = Value::Bool(true);
        } else if (t.value == "false" || t.value == "False") {
          e->literal = Value::Bool(false);
        } else if (t.value == "none" || t.value == "None") {
          e->literal = Value::None();
        } else {
          e->type = Expr::Type::kName;
          e->name = t.value;
        }
        return e;
      }
      case Token::Type::kString: {
        std::string s;
        while (Cur().type == Token::Type::kString) {  // adjacent literals concatenate
          s += Cur().value;
          Advance();
        }
        auto e = NewExpr(Expr::Type::kLiteral, t);
        e->literal = Value::String(std::move(s));
        return e;
      }
      case Token::Type::kInt: {
        Advance();
        auto e = NewExpr(Expr::Type::kLiteral, t);
        errno = 0;
        long long v = std::strtoll(t.value.c_str(), nullptr, 10);
        if (errno == ERANGE) FailAt("integer literal out of range", t);
        e->literal = Value::Int(v);
        return e;
      }
      case Token::Type::kFloat: {
        Advance();
        auto e = NewExpr(Expr::Type::kLiteral, t);
        e->literal = Value::Float(std::strtod(t.value.c_str(), nullptr));
        return e;
      }
      case Token::Type::kOperator:
        if (t.value == "(") {
          Advance();
          if (SkipOp(")")) return NewExpr(Expr::Type::kTuple, t);
          ExprPtr inner = ParseExpression();
          if (IsOp(",")) {
            auto tuple = NewExpr(Expr::Type::kTuple, t);
            tuple->items.push_back(std::move(inner));
            while (SkipOp(",")) {
              if (IsOp(")")) break;
              tuple->items.push_back(ParseExpression());
            }
            inner = std::move(tuple);
          }
          ExpectOp(")");
          return inner;
        }
        if (t.value == "[") {
          Advance();
          auto e = NewExpr(Expr::Type::kList, t);
          while (!IsOp("]")) {
            if (!e->items.empty()) ExpectOp(",");
            if (IsOp("]")) break;
            e->items.push_back(ParseExpression());
          }
          ExpectOp("]");
          return e;
        }
        if (t.value == "{") {
          Advance();
          auto e = NewExpr(Expr::Type::kDict, t);
          while (!IsOp("}")) {
            if (!e->pairs.empty()) ExpectOp(",");
            if (IsOp("}")) break;
            ExprPtr key = ParseExpression();
            ExpectOp(":");
            e->pairs.emplace_back(std::move(key), ParseExpression());
          }
          ExpectOp("}");
          return e;
        }
        break;
      default:
        break;
    }
    Fail(absl::StrCat("unexpected ", Describe(t)));
  }

  ExprPtr ParsePostfix(ExprPtr node) {
    while (true) {
      const Token& at = Cur();
      if (IsOp(".")) {
        Advance();
        if (Cur().type == Token::Type::kName) {
          auto e = NewExpr(Expr::Type::kGetAttr, at);
          e->a = std::move(node);
          e->name = Cur().value;
          Advance();
          node = std::move(e);
        } else if (Cur().type == Token::Type::kInt) {  // x.0 is x[0]
          auto e = NewExpr(Expr::Type::kGetItem, at);
          e->a = std::move(node);
          e->b = NewExpr(Expr::Type::kLiteral, Cur());
          e->b->literal = Value::Int(std::strtoll(Cur().value.c_str(), nullptr, 10));
          Advance();
          node = std::move(e);
        } else {
          Fail(absl::StrCat("expected an attribute name after '.', got ", Describe(Cur())));
        }
      } else if (IsOp("[")) {
        Advance();
        node = ParseSubscript(std::move(node), at);
      } else if (IsOp("(")) {
        node = ParseCall(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr ParseSubscript(ExprPtr node, const Token& at) {
    ExprPtr parts[3];
    int colons = 0;
    while (!IsOp("]")) {
      if (IsOp(":")) {
        if (++colons > 2) Fail("too many ':' in slice");
        Advance();
        continue;
      }
      if (parts[colons] != nullptr) Fail(absl::StrCat("expected ']', got ", Describe(Cur())));
      parts[colons] = ParseExpression();
    }
    ExpectOp("]");
    if (colons == 0) {
      if (parts[0] == nullptr) FailAt("empty subscript", at);
      auto e = NewExpr(Expr::Type::kGetItem, at);
      e->a = std::move(node);
      e->b = std::move(parts[0]);
      return e;
    }
    auto e = NewExpr(Expr::Type::kSlice, at);
    e->items.push_back(std::move(node));
    for (auto& part : parts) e->items.push_back(std::move(part));
    return e;
  }

  void ParseArgs(ArgExprs* args) {
    ExpectOp("(");
    bool first = true;
    while (!IsOp(")")) {
      if (!first) ExpectOp(",");
      first = false;
      if (IsOp(")")) break;
      if (IsOp("*") || IsOp("**")) Fail("*args and **kwargs in calls are not supported");
      if (Cur().type == Token::Type::kName && Peek().type == Token::Type::kOperator && Peek().value == "=") {
        std::string key = Cur().value;
        Advance();
        Advance();
        args->kwargs.emplace_back(std::move(key), ParseExpression());
      } else {
        if (!args->kwargs.empty()) Fail("positional argument follows keyword argument");
        args->positional.push_back(ParseExpression());
      }
    }
    ExpectOp(")");
  }

  ExprPtr ParseCall(ExprPtr callee) {
    auto e = NewExpr(Expr::Type::kCall, Cur());
    e->a = std::move(callee);
    ParseArgs(&e->args);
    return e;
  }

  std::string ParseDottedName(std::string_view what) {
    std::string name = ExpectName(what);
    while (IsOp(".") && Peek().type == Token::Type::kName) {
      Advance();
      name += "." + Cur().value;
      Advance();
    }
    return name;
  }

  // `| f(args) | g` applied to `node` (null: the value is supplied at run time, as in {% filter %}).
  ExprPtr ParseFilterChain(ExprPtr node, bool leading_pipe = true) {
    bool first = true;
    while ((first && !leading_pipe) || IsOp("|")) {
      if (!(first && !leading_pipe)) Advance();
      first = false;
      auto e = NewExpr(Expr::Type::kFilter, Cur());
      e->name = ParseDottedName("a filter name");
      if (IsOp("(")) ParseArgs(&e->args);
      e->a = std::move(node);
      node = std::move(e);
    }
    return node;
  }

  ExprPtr ParseFilterExpr(ExprPtr node) {
    while (true) {
      if (IsOp("|")) {
        node = ParseFilterChain(std::move(node));
      } else if (IsName("is")) {
        auto e = NewExpr(Expr::Type::kTest, Cur());
        Advance();
        e->negated = SkipName("not");
        // `is none`, `is true`, `is false` name tests, not literals.
        e->name = ParseDottedName("a test name");
        if (IsOp("(")) {
          ParseArgs(&e->args);
        } else if ((Cur().type == Token::Type::kName || Cur().type == Token::Type::kString ||
                    Cur().type == Token::Type::kInt || Cur().type == Token::Type::kFloat || IsOp("[") ||
                    IsOp("{")) &&
                   !IsName("else") && !IsName("or") && !IsName("and") && !IsName("if") && !IsName("in") &&
                   !IsName("not") && !IsName("is")) {
          // One argument without parentheses: `x is divisibleby 3`, `x is sameas none`.
          ExprPtr arg = ParsePrimary();
          e->args.positional.push_back(ParsePostfix(std::move(arg)));
        }
        e->a = std::move(node);
        node = std::move(e);
      } else if (IsOp("(")) {
        node = ParseCall(std::move(node));
      } else {
        return node;
      }
    }
  }

  const std::vector<Token>& t_;
  size_t p_ = 0;
  int depth_ = 0;
};

}  // namespace

Body ParseTokens(const std::vector<Token>& tokens) { return Parser(tokens).ParseTemplate(); }

}  // namespace stepserve::text::jinja
