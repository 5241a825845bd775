// Jinja tests: `value is name(args)`.
#include <cmath>
#include <functional>
#include <string>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "text/jinja/builtin_args.h"
#include "text/jinja/builtins.h"
#include "text/jinja/interpreter.h"

namespace stepserve::text::jinja {
namespace {

using TestFn = std::function<bool(const Value&, const CallArgs&)>;

const Value& Arg0(const CallArgs& args, std::string_view test) {
  if (args.positional.empty()) throw JinjaError(absl::StrCat("test '", std::string(test), "' needs an argument"));
  return args.positional[0];
}

bool IsLower(const std::string& s, bool upper) {
  bool cased = false;
  for (unsigned char c : s) {
    if (std::isalpha(c)) {
      cased = true;
      if ((upper && std::islower(c)) || (!upper && std::isupper(c))) return false;
    }
  }
  return cased;
}

const std::unordered_map<std::string, TestFn>& Tests() {
  static const auto* tests = new std::unordered_map<std::string, TestFn>{
      {"defined", [](const Value& v, const CallArgs&) { return !v.IsUndefined(); }},
      {"undefined", [](const Value& v, const CallArgs&) { return v.IsUndefined(); }},
      {"none", [](const Value& v, const CallArgs&) { return v.IsNone(); }},
      {"string", [](const Value& v, const CallArgs&) { return v.IsString(); }},
      {"mapping", [](const Value& v, const CallArgs&) { return v.IsDict(); }},
      // Undefined is iterable (it iterates as empty), as in jinja2.
      {"iterable",
       [](const Value& v, const CallArgs&) { return v.IsList() || v.IsDict() || v.IsString() || v.IsUndefined(); }},
      {"sequence", [](const Value& v, const CallArgs&) { return v.IsList() || v.IsDict() || v.IsString(); }},
      // bool is a Number in Python, so `true is number` holds; `integer` excludes booleans (jinja2 3.x).
      {"number", [](const Value& v, const CallArgs&) { return v.IsNumber(); }},
      {"integer", [](const Value& v, const CallArgs&) { return v.kind == Value::Kind::kInt; }},
      {"float", [](const Value& v, const CallArgs&) { return v.kind == Value::Kind::kFloat; }},
      {"boolean", [](const Value& v, const CallArgs&) { return v.kind == Value::Kind::kBool; }},
      {"true", [](const Value& v, const CallArgs&) { return v.kind == Value::Kind::kBool && v.b; }},
      {"false", [](const Value& v, const CallArgs&) { return v.kind == Value::Kind::kBool && !v.b; }},
      {"callable", [](const Value& v, const CallArgs&) { return v.kind == Value::Kind::kCallable; }},
      {"odd",
       [](const Value& v, const CallArgs&) {
         if (!v.IsIntegral()) throw JinjaError("test 'odd' needs an integer");
         return v.AsInt() % 2 != 0;
       }},
      {"even",
       [](const Value& v, const CallArgs&) {
         if (!v.IsIntegral()) throw JinjaError("test 'even' needs an integer");
         return v.AsInt() % 2 == 0;
       }},
      {"divisibleby",
       [](const Value& v, const CallArgs& args) {
         const Value& n = Arg0(args, "divisibleby");
         if (!v.IsNumber() || !n.IsNumber()) throw JinjaError("test 'divisibleby' needs numbers");
         if (n.AsDouble() == 0) throw JinjaError("division by zero in test 'divisibleby'");
         if (v.IsIntegral() && n.IsIntegral()) return v.AsInt() % n.AsInt() == 0;
         return std::fmod(v.AsDouble(), n.AsDouble()) == 0;
       }},
      {"eq", [](const Value& v, const CallArgs& args) { return Equals(v, Arg0(args, "eq")); }},
      {"ne", [](const Value& v, const CallArgs& args) { return !Equals(v, Arg0(args, "ne")); }},
      {"lt", [](const Value& v, const CallArgs& args) { return Compare(v, Arg0(args, "lt")) < 0; }},
      {"le", [](const Value& v, const CallArgs& args) { return Compare(v, Arg0(args, "le")) <= 0; }},
      {"gt", [](const Value& v, const CallArgs& args) { return Compare(v, Arg0(args, "gt")) > 0; }},
      {"ge", [](const Value& v, const CallArgs& args) { return Compare(v, Arg0(args, "ge")) >= 0; }},
      {"in", [](const Value& v, const CallArgs& args) { return Contains(Arg0(args, "in"), v); }},
      {"sameas",
       [](const Value& v, const CallArgs& args) {
         const Value& o = Arg0(args, "sameas");
         if (v.kind != o.kind) return false;
         switch (v.kind) {
           case Value::Kind::kNone:
           case Value::Kind::kUndefined:
             return true;
           case Value::Kind::kBool:
             return v.b == o.b;
           case Value::Kind::kList:
             return v.list == o.list;
           case Value::Kind::kDict:
           case Value::Kind::kNamespace:
             return v.dict == o.dict;
           default:
             return Equals(v, o);
         }
       }},
      {"lower", [](const Value& v, const CallArgs&) { return v.IsString() && IsLower(v.s(), false); }},
      {"upper", [](const Value& v, const CallArgs&) { return v.IsString() && IsLower(v.s(), true); }},
      {"escaped", [](const Value&, const CallArgs&) { return false; }},
  };
  return *tests;
}

}  // namespace

bool ApplyTest(Interpreter&, std::string_view name, const Value& value, CallArgs& args) {
  static const std::unordered_map<std::string, std::string> kAliases = {
      {"equalto", "eq"}, {"==", "eq"}, {"!=", "ne"}, {"<", "lt"}, {"<=", "le"}, {">", "gt"}, {">=", "ge"},
      {"greaterthan", "gt"}, {"lessthan", "lt"}};
  std::string key(name);
  if (auto alias = kAliases.find(key); alias != kAliases.end()) key = alias->second;
  auto it = Tests().find(key);
  if (it == Tests().end()) throw JinjaError(absl::StrCat("unknown test '", std::string(name), "'"));
  return it->second(value, args);
}

}  // namespace stepserve::text::jinja
