// Runtime values of the Jinja interpreter: Python-like (None, bool, int, float, str, list/tuple, dict,
// namespace, callables) plus Jinja's Undefined. Lists, dicts and namespaces have reference semantics, as in
// Python, so `ns.items.append(x)` and `{% set ns.x = ... %}` are visible through every alias.
#ifndef STEPSERVE_TEXT_JINJA_VALUE_H_
#define STEPSERVE_TEXT_JINJA_VALUE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace stepserve::text::jinja {

class Interpreter;
struct Value;

// A template error raised while rendering; the public API (Template, ChatTemplate) turns it into an
// absl::Status. line/col are 1-based, 0 when not known yet (the evaluator fills in the node's position).
class JinjaError : public std::runtime_error {
 public:
  explicit JinjaError(const std::string& message, int line = 0, int col = 0,
                      absl::StatusCode code = absl::StatusCode::kInvalidArgument)
      : std::runtime_error(message), line(line), col(col), code(code) {}
  int line;
  int col;
  absl::StatusCode code;
};

// Arguments of a call: f(a, b, key=c).
struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> kwargs;

  // The argument named `name` (keyword) or at `index` (positional), or nullptr.
  const Value* Get(size_t index, std::string_view name) const;
};

using NativeFunction = std::function<Value(Interpreter&, CallArgs&)>;

struct Callable {
  std::string name;
  NativeFunction fn;
};

// An insertion-ordered string-keyed dictionary.
class Dict {
 public:
  const Value* Find(std::string_view key) const;
  Value* Find(std::string_view key);
  void Set(const std::string& key, Value value);
  const std::vector<std::pair<std::string, Value>>& entries() const { return entries_; }
  size_t size() const { return entries_.size(); }

 private:
  std::vector<std::pair<std::string, Value>> entries_;
  std::unordered_map<std::string, size_t> index_;
};

struct Value {
  enum class Kind : uint8_t { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kNamespace, kCallable };

  Kind kind = Kind::kUndefined;
  bool is_tuple = false;  // kList only: prints as (a, b)
  bool b = false;
  int64_t i = 0;
  double d = 0;
  std::shared_ptr<const std::string> str;
  std::shared_ptr<std::vector<Value>> list;
  std::shared_ptr<Dict> dict;  // kDict and kNamespace
  std::shared_ptr<const Callable> fn;

  static Value Undefined() { return Value(); }
  static Value None();
  static Value Bool(bool v);
  static Value Int(int64_t v);
  static Value Float(double v);
  static Value String(std::string v);
  static Value List(std::vector<Value> items = {}, bool tuple = false);
  static Value NewDict();
  static Value NewNamespace();
  static Value Function(std::string name, NativeFunction fn);

  bool IsUndefined() const { return kind == Kind::kUndefined; }
  bool IsNone() const { return kind == Kind::kNone; }
  bool IsString() const { return kind == Kind::kString; }
  bool IsList() const { return kind == Kind::kList; }
  bool IsDict() const { return kind == Kind::kDict; }
  bool IsNumber() const { return kind == Kind::kInt || kind == Kind::kFloat || kind == Kind::kBool; }
  bool IsIntegral() const { return kind == Kind::kInt || kind == Kind::kBool; }
  const std::string& s() const { return *str; }
  int64_t AsInt() const { return kind == Kind::kBool ? (b ? 1 : 0) : i; }
  double AsDouble() const { return kind == Kind::kFloat ? d : static_cast<double>(AsInt()); }
};

// Python semantics.
bool Truthy(const Value& v);
std::string ToStr(const Value& v);   // str(v); Undefined prints as ""
std::string Repr(const Value& v);    // repr(v)
std::string FormatFloat(double d);   // repr(float): 1.0, 0.1, 1e+20, inf, nan
std::string TypeName(const Value& v);
bool Equals(const Value& a, const Value& b);
// <0, 0, >0; throws JinjaError when Python could not order the two values.
int Compare(const Value& a, const Value& b);

// UTF-8 helpers: strings index, slice and count by code point, as Python's str does.
std::u32string DecodeUtf8(std::string_view s);
std::string EncodeUtf8(std::u32string_view s);
void AppendUtf8(char32_t c, std::string* out);
size_t CountCodePoints(std::string_view s);

}  // namespace stepserve::text::jinja

#endif  // STEPSERVE_TEXT_JINJA_VALUE_H_
