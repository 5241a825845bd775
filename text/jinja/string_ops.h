// Python str operations shared by the string methods and the filters (code-point aware; ASCII case mapping).
#ifndef STEPSERVE_TEXT_JINJA_STRING_OPS_H_
#define STEPSERVE_TEXT_JINJA_STRING_OPS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "text/jinja/value.h"

namespace stepserve::text::jinja {

std::string PyStrip(const std::string& s, const Value* chars, bool left, bool right);
std::string PyUpper(const std::string& s);
std::string PyLower(const std::string& s);
std::string PyCapitalize(const std::string& s);
std::string PyTitle(const std::string& s);
std::vector<std::string> PySplit(const std::string& s, const Value* sep, int64_t maxsplit);
std::string PyReplace(const std::string& s, const std::string& old, const std::string& repl, int64_t count,
                      Interpreter& interp);

}  // namespace stepserve::text::jinja

#endif  // STEPSERVE_TEXT_JINJA_STRING_OPS_H_
