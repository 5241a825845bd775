// Jinja filters: `value | name(args)`, with jinja2's signatures (tojson with transformers').
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "text/jinja/builtin_args.h"
#include "text/jinja/builtins.h"
#include "text/jinja/interpreter.h"
#include "text/jinja/json_value.h"
#include "text/jinja/string_ops.h"

namespace stepserve::text::jinja {
namespace {

using FilterFn = std::function<Value(Interpreter&, const Value&, CallArgs&)>;

std::string RequireString(const Value& v, std::string_view filter) {
  if (v.IsString()) return v.s();
  if (v.IsUndefined()) return "";
  // jinja2 filters coerce with str(); keep that for scalars.
  if (v.IsNumber() || v.IsNone()) return ToStr(v);
  throw JinjaError(absl::StrCat("filter '", std::string(filter), "' expects a string, got ", TypeName(v)));
}

std::vector<Value> Sequence(const Value& v) { return IterateValue(v); }

int64_t Length(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kString:
      return static_cast<int64_t>(CountCodePoints(v.s()));
    case Value::Kind::kList:
      return static_cast<int64_t>(v.list->size());
    case Value::Kind::kDict:
    case Value::Kind::kNamespace:
      return static_cast<int64_t>(v.dict->size());
    case Value::Kind::kUndefined:
      return 0;
    default:
      throw JinjaError(absl::StrCat("object of type '", TypeName(v), "' has no len()"));
  }
}

// Sort key: the attribute (if any), lowercased when not case sensitive.
Value SortKey(const Value& v, const std::string& attribute, bool case_sensitive) {
  Value key = attribute.empty() ? v : LookupPath(v, attribute);
  if (!case_sensitive && key.IsString()) return Value::String(PyLower(key.s()));
  return key;
}

Value SortValues(std::vector<Value> items, const std::string& attribute, bool case_sensitive, bool reverse) {
  std::vector<std::pair<Value, Value>> keyed;
  for (Value& v : items) keyed.emplace_back(SortKey(v, attribute, case_sensitive), std::move(v));
  std::stable_sort(keyed.begin(), keyed.end(), [reverse](const auto& a, const auto& b) {
    return reverse ? Compare(b.first, a.first) < 0 : Compare(a.first, b.first) < 0;
  });
  std::vector<Value> out;
  for (auto& kv : keyed) out.push_back(std::move(kv.second));
  return Value::List(std::move(out));
}

// select/reject/selectattr/rejectattr.
Value SelectOrReject(Interpreter& interp, const Value& input, CallArgs& args, bool select, bool by_attribute) {
  size_t next = 0;
  std::string attribute;
  if (by_attribute) {
    if (args.positional.empty() || !args.positional[0].IsString()) {
      throw JinjaError(absl::StrCat(select ? "selectattr" : "rejectattr", "() needs an attribute name"));
    }
    attribute = args.positional[0].s();
    next = 1;
  }
  std::string test;
  if (args.positional.size() > next) {
    if (!args.positional[next].IsString()) throw JinjaError("the test name must be a string");
    test = args.positional[next].s();
  }
  CallArgs test_args;
  for (size_t k = next + 1; k < args.positional.size(); ++k) test_args.positional.push_back(args.positional[k]);
  test_args.kwargs = args.kwargs;
  std::vector<Value> out;
  for (const Value& item : Sequence(input)) {
    interp.CountIterations(1);
    Value subject = by_attribute ? LookupPath(item, attribute) : item;
    bool ok = test.empty() ? Truthy(subject) : ApplyTest(interp, test, subject, test_args);
    if (ok == select) out.push_back(item);
  }
  return Value::List(std::move(out));
}

std::string HtmlEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

Value ToInt(const Value& v, const Value& dflt, int64_t base) {
  switch (v.kind) {
    case Value::Kind::kInt:
    case Value::Kind::kBool:
      return Value::Int(v.AsInt());
    case Value::Kind::kFloat:
      if (!std::isfinite(v.d) || std::fabs(v.d) >= 9.2e18) return dflt;
      return Value::Int(static_cast<int64_t>(v.d));
    case Value::Kind::kString: {
      std::string s = PyStrip(v.s(), nullptr, true, true);
      std::string digits;
      for (char c : s) {
        if (c != '_') digits.push_back(c);
      }
      if (digits.empty()) return dflt;
      errno = 0;
      char* end = nullptr;
      long long n = std::strtoll(digits.c_str(), &end, static_cast<int>(base));
      if (errno == 0 && *end == '\0') return Value::Int(n);
      // jinja2 falls back to int(float(value)).
      double d = std::strtod(digits.c_str(), &end);
      if (*end == '\0' && std::isfinite(d) && std::fabs(d) < 9.2e18) return Value::Int(static_cast<int64_t>(d));
      return dflt;
    }
    default:
      return dflt;
  }
}

Value ToFloat(const Value& v, const Value& dflt) {
  if (v.IsNumber()) return Value::Float(v.AsDouble());
  if (v.IsString()) {
    std::string s = PyStrip(v.s(), nullptr, true, true);
    char* end = nullptr;
    double d = std::strtod(s.c_str(), &end);
    if (!s.empty() && *end == '\0') return Value::Float(d);
  }
  return dflt;
}

Value Round(const Value& v, int64_t precision, const std::string& method) {
  if (!v.IsNumber()) throw JinjaError(absl::StrCat("filter 'round' expects a number, got ", TypeName(v)));
  double x = v.AsDouble();
  if (method == "common") {
    if (v.IsIntegral() && precision >= 0) return Value::Float(x);
    // Python's round(): correctly rounded decimal, ties to even on the exact binary value.
    if (precision < 0 || precision > 300 || !std::isfinite(x)) {
      double p = std::pow(10.0, static_cast<double>(precision));
      return Value::Float(std::nearbyint(x * p) / p);
    }
    char buf[512];
    std::snprintf(buf, sizeof(buf), "%.*f", static_cast<int>(precision), x);
    return Value::Float(std::strtod(buf, nullptr));
  }
  double p = std::pow(10.0, static_cast<double>(precision));
  if (method == "ceil") return Value::Float(std::ceil(x * p) / p);
  if (method == "floor") return Value::Float(std::floor(x * p) / p);
  throw JinjaError("round(): method must be 'common', 'ceil' or 'floor'");
}

std::string Indent(const std::string& s, const std::string& pad, bool first, bool blank) {
  std::vector<std::string> lines = absl::StrSplit(s, '\n');
  std::string out;
  for (size_t k = 0; k < lines.size(); ++k) {
    if (k > 0) out += "\n";
    bool indent = (k > 0 || first) && (blank || !PyStrip(lines[k], nullptr, true, true).empty());
    if (indent) out += pad;
    out += lines[k];
  }
  return out;
}

Value Unique(const Value& input, const std::string& attribute, bool case_sensitive) {
  std::vector<Value> out, seen;
  for (const Value& item : Sequence(input)) {
    Value key = SortKey(item, attribute, case_sensitive);
    bool dup = false;
    for (const Value& s : seen) dup = dup || Equals(s, key);
    if (dup) continue;
    seen.push_back(key);
    out.push_back(item);
  }
  return Value::List(std::move(out));
}

Value MinMax(const Value& input, CallArgs& args, bool max) {
  bool case_sensitive = ArgBool(args, 0, "case_sensitive", false);
  std::string attribute = ArgString(args, 1, "attribute", "", max ? "max" : "min");
  std::vector<Value> items = Sequence(input);
  if (items.empty()) return Value::Undefined();
  size_t best = 0;
  for (size_t k = 1; k < items.size(); ++k) {
    int c = Compare(SortKey(items[k], attribute, case_sensitive), SortKey(items[best], attribute, case_sensitive));
    if (max ? c > 0 : c < 0) best = k;
  }
  return items[best];
}

const std::unordered_map<std::string, FilterFn>& Filters() {
  static const auto* filters = new std::unordered_map<std::string, FilterFn>{
      {"abs",
       [](Interpreter&, const Value& v, CallArgs&) {
         if (v.IsIntegral()) {
           if (v.AsInt() == INT64_MIN) throw JinjaError("integer overflow in abs");
           return Value::Int(std::llabs(v.AsInt()));
         }
         if (v.kind == Value::Kind::kFloat) return Value::Float(std::fabs(v.d));
         throw JinjaError(absl::StrCat("bad operand type for abs(): '", TypeName(v), "'"));
       }},
      {"attr",
       [](Interpreter&, const Value& v, CallArgs& a) {
         std::string name = ArgString(a, 0, "name", "", "attr");
         if (v.IsDict() || v.kind == Value::Kind::kNamespace) {
           const Value* x = v.dict->Find(name);
           return x != nullptr ? *x : Value::Undefined();
         }
         return Value::Undefined();
       }},
      {"batch",
       [](Interpreter&, const Value& v, CallArgs& a) {
         int64_t n = ArgInt(a, 0, "linecount", 0, "batch");
         if (n <= 0) throw JinjaError("batch(): linecount must be positive");
         const Value* fill = a.Get(1, "fill_with");
         std::vector<Value> out, cur;
         for (const Value& item : Sequence(v)) {
           cur.push_back(item);
           if (static_cast<int64_t>(cur.size()) == n) {
             out.push_back(Value::List(std::move(cur)));
             cur.clear();
           }
         }
         if (!cur.empty()) {
           if (fill != nullptr && !fill->IsNone()) {
             while (static_cast<int64_t>(cur.size()) < n) cur.push_back(*fill);
           }
           out.push_back(Value::List(std::move(cur)));
         }
         return Value::List(std::move(out));
       }},
      {"capitalize",
       [](Interpreter&, const Value& v, CallArgs&) { return Value::String(PyCapitalize(RequireString(v, "capitalize"))); }},
      {"default",
       [](Interpreter&, const Value& v, CallArgs& a) {
         Value dflt = ArgOr(a, 0, "default_value", Value::String(""));
         bool boolean = ArgBool(a, 1, "boolean", false);
         if (v.IsUndefined() || (boolean && !Truthy(v))) return dflt;
         return v;
       }},
      {"dictsort",
       [](Interpreter&, const Value& v, CallArgs& a) {
         if (!v.IsDict()) throw JinjaError("dictsort(): expected a mapping");
         bool case_sensitive = ArgBool(a, 0, "case_sensitive", false);
         std::string by = ArgString(a, 1, "by", "key", "dictsort");
         bool reverse = ArgBool(a, 2, "reverse", false);
         if (by != "key" && by != "value") throw JinjaError("dictsort(): 'by' must be 'key' or 'value'");
         std::vector<Value> pairs;
         for (const auto& [k, x] : v.dict->entries()) pairs.push_back(Value::List({Value::String(k), x}, true));
         std::vector<std::pair<Value, Value>> keyed;
         for (Value& p : pairs) keyed.emplace_back(SortKey((*p.list)[by == "key" ? 0 : 1], "", case_sensitive), p);
         std::stable_sort(keyed.begin(), keyed.end(), [reverse](const auto& x, const auto& y) {
           return reverse ? Compare(y.first, x.first) < 0 : Compare(x.first, y.first) < 0;
         });
         std::vector<Value> out;
         for (auto& kv : keyed) out.push_back(kv.second);
         return Value::List(std::move(out));
       }},
      {"escape", [](Interpreter&, const Value& v, CallArgs&) { return Value::String(HtmlEscape(ToStr(v))); }},
      {"first",
       [](Interpreter&, const Value& v, CallArgs&) {
         std::vector<Value> items = Sequence(v);
         return items.empty() ? Value::Undefined() : items.front();
       }},
      {"last",
       [](Interpreter&, const Value& v, CallArgs&) {
         std::vector<Value> items = Sequence(v);
         return items.empty() ? Value::Undefined() : items.back();
       }},
      {"float",
       [](Interpreter&, const Value& v, CallArgs& a) { return ToFloat(v, ArgOr(a, 0, "default", Value::Float(0))); }},
      {"int",
       [](Interpreter&, const Value& v, CallArgs& a) {
         return ToInt(v, ArgOr(a, 0, "default", Value::Int(0)), ArgInt(a, 1, "base", 10, "int"));
       }},
      {"fromjson",
       [](Interpreter&, const Value& v, CallArgs&) {
         if (!v.IsString()) throw JinjaError("fromjson expects a string");
         auto parsed = nlohmann::ordered_json::parse(v.s(), nullptr, /*allow_exceptions=*/false);
         if (parsed.is_discarded()) throw JinjaError("fromjson: invalid JSON");
         return FromJson(parsed);
       }},
      {"indent",
       [](Interpreter&, const Value& v, CallArgs& a) {
         const Value* width = a.Get(0, "width");
         std::string pad(4, ' ');
         if (width != nullptr && width->IsString()) {
           pad = width->s();
         } else if (width != nullptr && width->IsIntegral()) {
           pad = std::string(static_cast<size_t>(std::max<int64_t>(0, std::min<int64_t>(width->AsInt(), 1000))), ' ');
         }
         return Value::String(Indent(RequireString(v, "indent"), pad, ArgBool(a, 1, "first", false),
                                     ArgBool(a, 2, "blank", false)));
       }},
      {"items",
       [](Interpreter&, const Value& v, CallArgs&) {
         if (v.IsUndefined()) return Value::List({});
         if (!v.IsDict()) throw JinjaError(absl::StrCat("items(): expected a mapping, got ", TypeName(v)));
         std::vector<Value> out;
         for (const auto& [k, x] : v.dict->entries()) out.push_back(Value::List({Value::String(k), x}, true));
         return Value::List(std::move(out));
       }},
      {"join",
       [](Interpreter& interp, const Value& v, CallArgs& a) {
         std::string sep = ArgString(a, 0, "d", "", "join");
         std::string attribute = ArgString(a, 1, "attribute", "", "join");
         std::string out;
         bool first = true;
         for (const Value& item : Sequence(v)) {
           if (!first) out += sep;
           first = false;
           out += ToStr(attribute.empty() ? item : LookupPath(item, attribute));
           interp.CheckSize(out.size());
         }
         return Value::String(std::move(out));
       }},
      {"length", [](Interpreter&, const Value& v, CallArgs&) { return Value::Int(Length(v)); }},
      {"list", [](Interpreter&, const Value& v, CallArgs&) { return Value::List(Sequence(v)); }},
      {"lower", [](Interpreter&, const Value& v, CallArgs&) { return Value::String(PyLower(RequireString(v, "lower"))); }},
      {"upper", [](Interpreter&, const Value& v, CallArgs&) { return Value::String(PyUpper(RequireString(v, "upper"))); }},
      {"map",
       [](Interpreter& interp, const Value& v, CallArgs& a) {
         std::vector<Value> out;
         const Value* attribute = a.Get(SIZE_MAX, "attribute");
         if (attribute != nullptr) {
           Value dflt = ArgOr(a, SIZE_MAX, "default", Value::Undefined());
           for (const Value& item : Sequence(v)) {
             Value x = LookupPath(item, ToStr(*attribute));
             out.push_back(x.IsUndefined() ? dflt : x);
           }
           return Value::List(std::move(out));
         }
         if (a.positional.empty() || !a.positional[0].IsString()) {
           throw JinjaError("map() needs a filter name or attribute=");
         }
         std::string filter = a.positional[0].s();
         CallArgs rest;
         rest.positional.assign(a.positional.begin() + 1, a.positional.end());
         rest.kwargs = a.kwargs;
         for (const Value& item : Sequence(v)) {
           interp.CountIterations(1);
           CallArgs copy = rest;
           out.push_back(ApplyFilter(interp, filter, item, copy));
         }
         return Value::List(std::move(out));
       }},
      {"max", [](Interpreter&, const Value& v, CallArgs& a) { return MinMax(v, a, true); }},
      {"min", [](Interpreter&, const Value& v, CallArgs& a) { return MinMax(v, a, false); }},
      {"select", [](Interpreter& i, const Value& v, CallArgs& a) { return SelectOrReject(i, v, a, true, false); }},
      {"reject", [](Interpreter& i, const Value& v, CallArgs& a) { return SelectOrReject(i, v, a, false, false); }},
      {"selectattr", [](Interpreter& i, const Value& v, CallArgs& a) { return SelectOrReject(i, v, a, true, true); }},
      {"rejectattr", [](Interpreter& i, const Value& v, CallArgs& a) { return SelectOrReject(i, v, a, false, true); }},
      {"replace",
       [](Interpreter& interp, const Value& v, CallArgs& a) {
         if (a.positional.size() < 2) throw JinjaError("replace() takes two arguments");
         return Value::String(PyReplace(RequireString(v, "replace"), ToStr(a.positional[0]), ToStr(a.positional[1]),
                                        ArgInt(a, 2, "count", -1, "replace"), interp));
       }},
      {"reverse",
       [](Interpreter&, const Value& v, CallArgs&) {
         if (v.IsString()) {
           std::u32string u = DecodeUtf8(v.s());
           std::reverse(u.begin(), u.end());
           return Value::String(EncodeUtf8(u));
         }
         std::vector<Value> items = Sequence(v);
         std::reverse(items.begin(), items.end());
         return Value::List(std::move(items));
       }},
      {"round",
       [](Interpreter&, const Value& v, CallArgs& a) {
         return Round(v, ArgInt(a, 0, "precision", 0, "round"), ArgString(a, 1, "method", "common", "round"));
       }},
      {"safe", [](Interpreter&, const Value& v, CallArgs&) { return v; }},
      {"sort",
       [](Interpreter&, const Value& v, CallArgs& a) {
         return SortValues(Sequence(v), ArgString(a, 2, "attribute", "", "sort"), ArgBool(a, 1, "case_sensitive", false),
                           ArgBool(a, 0, "reverse", false));
       }},
      {"string", [](Interpreter&, const Value& v, CallArgs&) { return Value::String(ToStr(v)); }},
      {"sum",
       [](Interpreter& interp, const Value& v, CallArgs& a) {
         std::string attribute = ArgString(a, 0, "attribute", "", "sum");
         Value total = ArgOr(a, 1, "start", Value::Int(0));
         for (const Value& item : Sequence(v)) {
           Value x = attribute.empty() ? item : LookupPath(item, attribute);
           if (!x.IsNumber() || !total.IsNumber()) throw JinjaError("sum(): values must be numbers");
           if (total.IsIntegral() && x.IsIntegral()) {
             int64_t r;
             if (__builtin_add_overflow(total.AsInt(), x.AsInt(), &r)) throw JinjaError("integer overflow in sum");
             total = Value::Int(r);
           } else {
             total = Value::Float(total.AsDouble() + x.AsDouble());
           }
           interp.CountIterations(1);
         }
         return total;
       }},
      {"title", [](Interpreter&, const Value& v, CallArgs&) {
         // jinja2's title filter: words start after whitespace, '-', or an opening bracket.
         std::u32string u = DecodeUtf8(RequireString(v, "title"));
         bool start = true;
         for (char32_t& c : u) {
           bool boundary = c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '-' || c == '(' || c == '{' ||
                           c == '[' || c == '<';
           if (boundary) {
             start = true;
             continue;
           }
           if (c < 0x80) c = static_cast<char32_t>(start ? std::toupper(static_cast<int>(c)) : std::tolower(static_cast<int>(c)));
           start = false;
         }
         return Value::String(EncodeUtf8(u));
       }},
      {"tojson",
       [](Interpreter&, const Value& v, CallArgs& a) {
         // transformers: tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False).
         JsonDumpOptions o;
         o.ensure_ascii = ArgBool(a, 0, "ensure_ascii", false);
         const Value* indent = a.Get(1, "indent");
         if (indent != nullptr && indent->IsIntegral()) {
           o.indent = static_cast<int>(std::max<int64_t>(0, std::min<int64_t>(indent->AsInt(), 100)));
         } else if (indent != nullptr && indent->IsString()) {
           o.indent_str = indent->s();
           o.indent = 0;
         }
         const Value* separators = a.Get(2, "separators");
         if (separators != nullptr && separators->IsList()) {
           if (separators->list->size() != 2 || !(*separators->list)[0].IsString() ||
               !(*separators->list)[1].IsString()) {
             throw JinjaError("tojson(): separators must be a pair of strings");
           }
           o.has_separators = true;
           o.item_separator = (*separators->list)[0].s();
           o.key_separator = (*separators->list)[1].s();
         }
         o.sort_keys = ArgBool(a, 3, "sort_keys", false);
         return Value::String(JsonDumps(v, o));
       }},
      {"trim",
       [](Interpreter&, const Value& v, CallArgs& a) {
         return Value::String(PyStrip(RequireString(v, "trim"), a.Get(0, "chars"), true, true));
       }},
      {"unique",
       [](Interpreter&, const Value& v, CallArgs& a) {
         return Unique(v, ArgString(a, 1, "attribute", "", "unique"), ArgBool(a, 0, "case_sensitive", false));
       }},
      {"wordcount",
       [](Interpreter&, const Value& v, CallArgs&) {
         return Value::Int(static_cast<int64_t>(PySplit(RequireString(v, "wordcount"), nullptr, -1).size()));
       }},
  };
  return *filters;
}

const std::unordered_map<std::string, std::string>& Aliases() {
  static const auto* aliases = new std::unordered_map<std::string, std::string>{
      {"d", "default"}, {"e", "escape"}, {"count", "length"}};
  return *aliases;
}

}  // namespace

bool HasFilter(std::string_view name) {
  std::string key(name);
  return Filters().count(key) > 0 || Aliases().count(key) > 0;
}

Value ApplyFilter(Interpreter& interp, std::string_view name, const Value& input, CallArgs& args) {
  std::string key(name);
  if (auto alias = Aliases().find(key); alias != Aliases().end()) key = alias->second;
  auto it = Filters().find(key);
  if (it == Filters().end()) throw JinjaError(absl::StrCat("unknown filter '", std::string(name), "'"));
  return it->second(interp, input, args);
}

}  // namespace stepserve::text::jinja
