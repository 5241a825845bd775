// The built-in filters, tests, methods (str/dict/list) and global functions.
#ifndef STEPSERVE_TEXT_JINJA_BUILTINS_H_
#define STEPSERVE_TEXT_JINJA_BUILTINS_H_

#include <string_view>

#include "text/jinja/value.h"

namespace stepserve::text::jinja {

class Frame;

// `input | name(args)`. Throws JinjaError for an unknown filter or bad arguments.
Value ApplyFilter(Interpreter& interp, std::string_view name, const Value& input, CallArgs& args);
bool HasFilter(std::string_view name);

// `value is name(args)`. Throws JinjaError for an unknown test.
bool ApplyTest(Interpreter& interp, std::string_view name, const Value& value, CallArgs& args);

// `obj.name` when `name` is a method of obj's type (str.startswith, dict.items, list.append, ...): sets
// *method to the bound method and returns true.
bool GetMethod(const Value& obj, std::string_view name, Value* method);

// Python json.dumps(value, ensure_ascii=..., indent=..., separators=..., sort_keys=...) as transformers'
// tojson filter calls it.
struct JsonDumpOptions {
  bool ensure_ascii = false;
  int indent = -1;  // -1: None (single line)
  std::string indent_str;  // used when set (indent given as a string)
  bool has_separators = false;
  std::string item_separator = ", ";
  std::string key_separator = ": ";
  bool sort_keys = false;
};
std::string JsonDumps(const Value& value, const JsonDumpOptions& options);

}  // namespace stepserve::text::jinja

#endif  // STEPSERVE_TEXT_JINJA_BUILTINS_H_
