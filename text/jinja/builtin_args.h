// Argument helpers shared by the filters, tests, methods and global functions.
#ifndef STEPSERVE_TEXT_JINJA_BUILTIN_ARGS_H_
#define STEPSERVE_TEXT_JINJA_BUILTIN_ARGS_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "text/jinja/value.h"

namespace stepserve::text::jinja {

// Reads the argument at `index` or named `name` of the callable `fn`, or `dflt` when absent.
Value ArgOr(const CallArgs& args, size_t index, std::string_view name, Value dflt);
bool ArgBool(const CallArgs& args, size_t index, std::string_view name, bool dflt);
int64_t ArgInt(const CallArgs& args, size_t index, std::string_view name, int64_t dflt, std::string_view fn);
std::string ArgString(const CallArgs& args, size_t index, std::string_view name, std::string_view dflt,
                      std::string_view fn);
// Throws when more than `max_positional` positional arguments or an unknown keyword was passed.
void CheckArgs(const CallArgs& args, size_t max_positional, std::initializer_list<std::string_view> names,
               std::string_view fn);

// `item.attr.0.name`-style lookup used by map/sort/selectattr/... (attribute=...). Undefined when missing.
Value LookupPath(const Value& v, std::string_view path);

}  // namespace stepserve::text::jinja

#endif  // STEPSERVE_TEXT_JINJA_BUILTIN_ARGS_H_
