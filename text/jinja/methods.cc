// Methods of Python's str, dict and list that chat templates call: `s.startswith('x')`, `d.items()`, ...
// Case mapping (upper/lower/title/capitalize) is ASCII-only; other characters are left as they are.
#include <algorithm>
#include <cctype>
#include <functional>
#include <string>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "text/jinja/builtin_args.h"
#include "text/jinja/builtins.h"
#include "text/jinja/interpreter.h"
#include "text/jinja/string_ops.h"

namespace stepserve::text::jinja {
namespace {

using Method = std::function<Value(Interpreter&, const Value& self, CallArgs&)>;

bool IsPySpace(char32_t c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f' || c == 0x1c || c == 0x1d ||
         c == 0x1e || c == 0x1f || c == 0x85 || c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) ||
         c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

char32_t Upper(char32_t c) { return c < 0x80 ? static_cast<char32_t>(std::toupper(static_cast<int>(c))) : c; }
char32_t Lower(char32_t c) { return c < 0x80 ? static_cast<char32_t>(std::tolower(static_cast<int>(c))) : c; }
bool IsCased(char32_t c) { return c < 0x80 && std::isalpha(static_cast<int>(c)); }

}  // namespace

// Shared with the filters (trim, upper, lower, capitalize, title).
std::string PyStrip(const std::string& s, const Value* chars, bool left, bool right) {
  std::u32string u = DecodeUtf8(s);
  std::u32string set;
  bool whitespace = chars == nullptr || chars->IsNone() || chars->IsUndefined();
  if (!whitespace) {
    if (!chars->IsString()) throw JinjaError("strip arg must be None or str");
    set = DecodeUtf8(chars->s());
  }
  auto strip = [&](char32_t c) { return whitespace ? IsPySpace(c) : set.find(c) != std::u32string::npos; };
  size_t lo = 0, hi = u.size();
  if (left) {
    while (lo < hi && strip(u[lo])) ++lo;
  }
  if (right) {
    while (hi > lo && strip(u[hi - 1])) --hi;
  }
  return EncodeUtf8(std::u32string_view(u).substr(lo, hi - lo));
}

std::string PyUpper(const std::string& s) {
  std::string out = s;
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)) & 0xff);
  for (size_t k = 0; k < s.size(); ++k) {
    if (static_cast<unsigned char>(s[k]) >= 0x80) out[k] = s[k];
  }
  return out;
}

std::string PyLower(const std::string& s) {
  std::string out = s;
  for (size_t k = 0; k < s.size(); ++k) {
    if (static_cast<unsigned char>(s[k]) < 0x80) out[k] = static_cast<char>(std::tolower(static_cast<unsigned char>(s[k])));
  }
  return out;
}

std::string PyCapitalize(const std::string& s) {
  std::u32string u = DecodeUtf8(s);
  for (size_t k = 0; k < u.size(); ++k) u[k] = k == 0 ? Upper(u[k]) : Lower(u[k]);
  return EncodeUtf8(u);
}

// str.title(): a cased character after an uncased one starts a word.
std::string PyTitle(const std::string& s) {
  std::u32string u = DecodeUtf8(s);
  bool prev_cased = false;
  for (char32_t& c : u) {
    c = prev_cased ? Lower(c) : Upper(c);
    prev_cased = IsCased(c);
  }
  return EncodeUtf8(u);
}

std::vector<std::string> PySplit(const std::string& s, const Value* sep, int64_t maxsplit) {
  std::vector<std::string> out;
  if (sep == nullptr || sep->IsNone() || sep->IsUndefined()) {
    std::u32string u = DecodeUtf8(s);
    size_t k = 0;
    while (true) {
      while (k < u.size() && IsPySpace(u[k])) ++k;
      if (k >= u.size()) break;
      if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
        size_t end = u.size();
        while (end > k && IsPySpace(u[end - 1])) --end;
        out.push_back(EncodeUtf8(u.substr(k, end - k)));
        break;
      }
      size_t e = k;
      while (e < u.size() && !IsPySpace(u[e])) ++e;
      out.push_back(EncodeUtf8(u.substr(k, e - k)));
      k = e;
    }
    return out;
  }
  if (!sep->IsString()) throw JinjaError("split(): separator must be a string or None");
  const std::string& d = sep->s();
  if (d.empty()) throw JinjaError("split(): empty separator");
  size_t start = 0;
  while (true) {
    size_t k = s.find(d, start);
    if (k == std::string::npos || (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit)) break;
    out.push_back(s.substr(start, k - start));
    start = k + d.size();
  }
  out.push_back(s.substr(start));
  return out;
}

std::string PyReplace(const std::string& s, const std::string& old, const std::string& repl, int64_t count,
                      Interpreter& interp) {
  std::string out;
  int64_t done = 0;
  if (old.empty()) {  // Python inserts `repl` around every character
    std::u32string u = DecodeUtf8(s);
    for (size_t k = 0; k <= u.size(); ++k) {
      if (count < 0 || done < count) {
        out += repl;
        ++done;
      }
      if (k < u.size()) AppendUtf8(u[k], &out);
      interp.CheckSize(out.size());
    }
    return out;
  }
  size_t start = 0;
  while (count < 0 || done < count) {
    size_t k = s.find(old, start);
    if (k == std::string::npos) break;
    out.append(s, start, k - start);
    out += repl;
    interp.CheckSize(out.size());
    start = k + old.size();
    ++done;
  }
  out.append(s, start, std::string::npos);
  return out;
}

namespace {

Value StrList(const std::vector<std::string>& parts) {
  std::vector<Value> out;
  out.reserve(parts.size());
  for (const auto& p : parts) out.push_back(Value::String(p));
  return Value::List(std::move(out));
}

bool MatchAffix(const Value& self, const CallArgs& args, bool prefix, const char* fn) {
  if (args.positional.empty()) throw JinjaError(absl::StrCat(fn, "() takes at least 1 argument"));
  const Value& arg = args.positional[0];
  std::vector<Value> candidates = arg.IsList() ? *arg.list : std::vector<Value>{arg};
  for (const Value& c : candidates) {
    if (!c.IsString()) throw JinjaError(absl::StrCat(fn, "() argument must be str or a tuple of str"));
    const std::string& s = self.s();
    const std::string& a = c.s();
    if (a.size() > s.size()) continue;
    if (prefix ? s.compare(0, a.size(), a) == 0 : s.compare(s.size() - a.size(), a.size(), a) == 0) return true;
  }
  return false;
}

const Value* Positional(const CallArgs& args, size_t k) {
  return k < args.positional.size() ? &args.positional[k] : nullptr;
}

int64_t FindIndex(const std::string& s, const std::string& sub, bool reverse) {
  size_t k = reverse ? s.rfind(sub) : s.find(sub);
  if (k == std::string::npos) return -1;
  return static_cast<int64_t>(CountCodePoints(std::string_view(s).substr(0, k)));
}

std::string Format(const std::string& fmt, const CallArgs& args) {
  std::string out;
  size_t auto_index = 0;
  for (size_t k = 0; k < fmt.size(); ++k) {
    char c = fmt[k];
    if (c == '{' && k + 1 < fmt.size() && fmt[k + 1] == '{') {
      out.push_back('{');
      ++k;
    } else if (c == '}' && k + 1 < fmt.size() && fmt[k + 1] == '}') {
      out.push_back('}');
      ++k;
    } else if (c == '{') {
      size_t e = fmt.find('}', k);
      if (e == std::string::npos) throw JinjaError("format(): single '{' encountered in format string");
      std::string field = fmt.substr(k + 1, e - k - 1);
      if (field.find_first_of(":!") != std::string::npos) throw JinjaError("format(): format specs are not supported");
      const Value* v = nullptr;
      if (field.empty()) {
        v = Positional(args, auto_index++);
      } else if (std::all_of(field.begin(), field.end(), ::isdigit)) {
        v = Positional(args, static_cast<size_t>(std::stoul(field)));
      } else {
        for (const auto& kw : args.kwargs) {
          if (kw.first == field) v = &kw.second;
        }
      }
      if (v == nullptr) throw JinjaError(absl::StrCat("format(): no argument for field '{", field, "}'"));
      out += ToStr(*v);
      k = e;
    } else if (c == '}') {
      throw JinjaError("format(): single '}' encountered in format string");
    } else {
      out.push_back(c);
    }
  }
  return out;
}

bool AllChars(const std::string& s, const std::function<bool(char32_t)>& pred) {
  std::u32string u = DecodeUtf8(s);
  return !u.empty() && std::all_of(u.begin(), u.end(), pred);
}

const std::unordered_map<std::string, Method>& StringMethods() {
  static const auto* m = new std::unordered_map<std::string, Method>{
      {"startswith", [](Interpreter&, const Value& s, CallArgs& a) { return Value::Bool(MatchAffix(s, a, true, "startswith")); }},
      {"endswith", [](Interpreter&, const Value& s, CallArgs& a) { return Value::Bool(MatchAffix(s, a, false, "endswith")); }},
      {"split",
       [](Interpreter&, const Value& s, CallArgs& a) {
         return StrList(PySplit(s.s(), a.Get(0, "sep"), ArgInt(a, 1, "maxsplit", -1, "split")));
       }},
      {"rsplit",
       [](Interpreter&, const Value& s, CallArgs& a) {
         int64_t maxsplit = ArgInt(a, 1, "maxsplit", -1, "rsplit");
         std::vector<std::string> all = PySplit(s.s(), a.Get(0, "sep"), -1);
         if (maxsplit < 0 || static_cast<int64_t>(all.size()) <= maxsplit + 1) return StrList(all);
         const Value* sep = a.Get(0, "sep");
         if (sep == nullptr || !sep->IsString()) throw JinjaError("rsplit(): maxsplit needs an explicit separator");
         size_t head = all.size() - static_cast<size_t>(maxsplit);
         std::string first;
         for (size_t k = 0; k < head; ++k) first += (k > 0 ? sep->s() : "") + all[k];
         std::vector<std::string> out{first};
         out.insert(out.end(), all.begin() + static_cast<std::ptrdiff_t>(head), all.end());
         return StrList(out);
       }},
      {"strip", [](Interpreter&, const Value& s, CallArgs& a) { return Value::String(PyStrip(s.s(), a.Get(0, "chars"), true, true)); }},
      {"lstrip", [](Interpreter&, const Value& s, CallArgs& a) { return Value::String(PyStrip(s.s(), a.Get(0, "chars"), true, false)); }},
      {"rstrip", [](Interpreter&, const Value& s, CallArgs& a) { return Value::String(PyStrip(s.s(), a.Get(0, "chars"), false, true)); }},
      {"replace",
       [](Interpreter& interp, const Value& s, CallArgs& a) {
         if (a.positional.size() < 2 || !a.positional[0].IsString() || !a.positional[1].IsString()) {
           throw JinjaError("replace() takes two string arguments");
         }
         return Value::String(PyReplace(s.s(), a.positional[0].s(), a.positional[1].s(),
                                        ArgInt(a, 2, "count", -1, "replace"), interp));
       }},
      {"upper", [](Interpreter&, const Value& s, CallArgs&) { return Value::String(PyUpper(s.s())); }},
      {"lower", [](Interpreter&, const Value& s, CallArgs&) { return Value::String(PyLower(s.s())); }},
      {"title", [](Interpreter&, const Value& s, CallArgs&) { return Value::String(PyTitle(s.s())); }},
      {"capitalize", [](Interpreter&, const Value& s, CallArgs&) { return Value::String(PyCapitalize(s.s())); }},
      {"find",
       [](Interpreter&, const Value& s, CallArgs& a) {
         return Value::Int(FindIndex(s.s(), ArgString(a, 0, "sub", "", "find"), false));
       }},
      {"rfind",
       [](Interpreter&, const Value& s, CallArgs& a) {
         return Value::Int(FindIndex(s.s(), ArgString(a, 0, "sub", "", "rfind"), true));
       }},
      {"count",
       [](Interpreter&, const Value& s, CallArgs& a) {
         std::string sub = ArgString(a, 0, "sub", "", "count");
         if (sub.empty()) return Value::Int(static_cast<int64_t>(CountCodePoints(s.s())) + 1);
         int64_t n = 0;
         for (size_t k = s.s().find(sub); k != std::string::npos; k = s.s().find(sub, k + sub.size())) ++n;
         return Value::Int(n);
       }},
      {"format", [](Interpreter&, const Value& s, CallArgs& a) { return Value::String(Format(s.s(), a)); }},
      {"join",
       [](Interpreter& interp, const Value& s, CallArgs& a) {
         if (a.positional.empty()) throw JinjaError("join() takes exactly one argument");
         std::string out;
         bool first = true;
         for (const Value& item : IterateValue(a.positional[0])) {
           if (!item.IsString()) throw JinjaError(absl::StrCat("sequence item: expected str instance, ", TypeName(item), " found"));
           if (!first) out += s.s();
           first = false;
           out += item.s();
           interp.CheckSize(out.size());
         }
         return Value::String(std::move(out));
       }},
      {"splitlines",
       [](Interpreter&, const Value& s, CallArgs& a) {
         bool keepends = ArgBool(a, 0, "keepends", false);
         std::vector<std::string> out;
         const std::string& t = s.s();
         size_t start = 0;
         for (size_t k = 0; k < t.size(); ++k) {
           if (t[k] != '\n' && t[k] != '\r') continue;
           size_t end = k;
           if (t[k] == '\r' && k + 1 < t.size() && t[k + 1] == '\n') ++k;
           out.push_back(t.substr(start, (keepends ? k + 1 : end) - start));
           start = k + 1;
         }
         if (start < t.size()) out.push_back(t.substr(start));
         return StrList(out);
       }},
      {"isdigit", [](Interpreter&, const Value& s, CallArgs&) { return Value::Bool(AllChars(s.s(), [](char32_t c) { return c >= '0' && c <= '9'; })); }},
      {"isalpha", [](Interpreter&, const Value& s, CallArgs&) { return Value::Bool(AllChars(s.s(), [](char32_t c) { return IsCased(c) || c >= 0x80; })); }},
      {"isalnum", [](Interpreter&, const Value& s, CallArgs&) { return Value::Bool(AllChars(s.s(), [](char32_t c) { return IsCased(c) || (c >= '0' && c <= '9') || c >= 0x80; })); }},
      {"isspace", [](Interpreter&, const Value& s, CallArgs&) { return Value::Bool(AllChars(s.s(), IsPySpace)); }},
      {"islower", [](Interpreter&, const Value& s, CallArgs&) { return Value::Bool(PyLower(s.s()) == s.s() && PyUpper(s.s()) != s.s()); }},
      {"isupper", [](Interpreter&, const Value& s, CallArgs&) { return Value::Bool(PyUpper(s.s()) == s.s() && PyLower(s.s()) != s.s()); }},
  };
  return *m;
}

Value Items(const Value& d) {
  std::vector<Value> out;
  for (const auto& [k, v] : d.dict->entries()) out.push_back(Value::List({Value::String(k), v}, true));
  return Value::List(std::move(out));
}

const std::unordered_map<std::string, Method>& DictMethods() {
  static const auto* m = new std::unordered_map<std::string, Method>{
      {"items", [](Interpreter&, const Value& d, CallArgs&) { return Items(d); }},
      {"keys",
       [](Interpreter&, const Value& d, CallArgs&) {
         std::vector<Value> out;
         for (const auto& e : d.dict->entries()) out.push_back(Value::String(e.first));
         return Value::List(std::move(out));
       }},
      {"values",
       [](Interpreter&, const Value& d, CallArgs&) {
         std::vector<Value> out;
         for (const auto& e : d.dict->entries()) out.push_back(e.second);
         return Value::List(std::move(out));
       }},
      {"get",
       [](Interpreter&, const Value& d, CallArgs& a) {
         if (a.positional.empty()) throw JinjaError("get() takes at least 1 argument");
         const Value& key = a.positional[0];
         const Value* v = key.IsString() ? d.dict->Find(key.s()) : nullptr;
         if (v != nullptr) return *v;
         return a.positional.size() > 1 ? a.positional[1] : Value::None();
       }},
  };
  return *m;
}

// Mutating list methods: transformers' ImmutableSandboxedEnvironment refuses them (SecurityError); we allow
// append/extend as @huggingface/jinja does, since templates written against it use them.
const std::unordered_map<std::string, Method>& ListMethods() {
  static const auto* m = new std::unordered_map<std::string, Method>{
      {"append",
       [](Interpreter& interp, const Value& l, CallArgs& a) {
         if (a.positional.size() != 1) throw JinjaError("append() takes exactly one argument");
         if (l.is_tuple) throw JinjaError("'tuple' object has no attribute 'append'");
         interp.CountIterations(1);
         l.list->push_back(a.positional[0]);
         return Value::None();
       }},
      {"extend",
       [](Interpreter& interp, const Value& l, CallArgs& a) {
         if (a.positional.size() != 1) throw JinjaError("extend() takes exactly one argument");
         if (l.is_tuple) throw JinjaError("'tuple' object has no attribute 'extend'");
         std::vector<Value> items = IterateValue(a.positional[0]);
         interp.CountIterations(static_cast<int64_t>(items.size()));
         l.list->insert(l.list->end(), items.begin(), items.end());
         return Value::None();
       }},
      {"index",
       [](Interpreter&, const Value& l, CallArgs& a) {
         if (a.positional.empty()) throw JinjaError("index() takes at least 1 argument");
         for (size_t k = 0; k < l.list->size(); ++k) {
           if (Equals((*l.list)[k], a.positional[0])) return Value::Int(static_cast<int64_t>(k));
         }
         throw JinjaError(absl::StrCat(Repr(a.positional[0]), " is not in list"));
       }},
      {"count",
       [](Interpreter&, const Value& l, CallArgs& a) {
         if (a.positional.empty()) throw JinjaError("count() takes exactly one argument");
         int64_t n = 0;
         for (const Value& v : *l.list) n += Equals(v, a.positional[0]) ? 1 : 0;
         return Value::Int(n);
       }},
  };
  return *m;
}

}  // namespace

bool GetMethod(const Value& obj, std::string_view name, Value* method) {
  const std::unordered_map<std::string, Method>* table = nullptr;
  if (obj.IsString()) {
    table = &StringMethods();
  } else if (obj.IsDict()) {
    table = &DictMethods();
  } else if (obj.IsList()) {
    table = &ListMethods();
  } else {
    return false;
  }
  auto it = table->find(std::string(name));
  if (it == table->end()) return false;
  const Method& fn = it->second;
  *method = Value::Function(std::string(name), [fn, obj](Interpreter& interp, CallArgs& args) {
    return fn(interp, obj, args);
  });
  return true;
}

}  // namespace stepserve::text::jinja
