#include "text/jinja/builtin_args.h"

#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace stepserve::text::jinja {

Value ArgOr(const CallArgs& args, size_t index, std::string_view name, Value dflt) {
  const Value* v = args.Get(index, name);
  return v != nullptr && !v->IsUndefined() ? *v : dflt;
}

bool ArgBool(const CallArgs& args, size_t index, std::string_view name, bool dflt) {
  const Value* v = args.Get(index, name);
  return v != nullptr && !v->IsUndefined() ? Truthy(*v) : dflt;
}

int64_t ArgInt(const CallArgs& args, size_t index, std::string_view name, int64_t dflt, std::string_view fn) {
  const Value* v = args.Get(index, name);
  if (v == nullptr || v->IsUndefined() || v->IsNone()) return dflt;
  if (!v->IsIntegral()) throw JinjaError(absl::StrCat(std::string(fn), "(): '", std::string(name), "' must be an integer"));
  return v->AsInt();
}

std::string ArgString(const CallArgs& args, size_t index, std::string_view name, std::string_view dflt,
                      std::string_view fn) {
  const Value* v = args.Get(index, name);
  if (v == nullptr || v->IsUndefined() || v->IsNone()) return std::string(dflt);
  if (!v->IsString()) throw JinjaError(absl::StrCat(std::string(fn), "(): '", std::string(name), "' must be a string"));
  return v->s();
}

void CheckArgs(const CallArgs& args, size_t max_positional, std::initializer_list<std::string_view> names,
               std::string_view fn) {
  if (args.positional.size() > max_positional) {
    throw JinjaError(absl::StrCat(std::string(fn), "() takes at most ", max_positional, " arguments (", args.positional.size(),
                                  " given)"));
  }
  for (const auto& kw : args.kwargs) {
    bool known = false;
    for (std::string_view n : names) known = known || n == kw.first;
    if (!known) throw JinjaError(absl::StrCat(std::string(fn), "() got an unexpected keyword argument '", kw.first, "'"));
  }
}

Value LookupPath(const Value& v, std::string_view path) {
  Value cur = v;
  for (absl::string_view part : absl::StrSplit(absl::string_view(path.data(), path.size()), '.')) {
    int64_t index;
    if (cur.kind == Value::Kind::kDict || cur.kind == Value::Kind::kNamespace) {
      const Value* next = cur.dict->Find(std::string_view(part.data(), part.size()));
      if (next == nullptr) return Value::Undefined();
      cur = *next;
    } else if (cur.IsList() && absl::SimpleAtoi(part, &index)) {
      if (index < 0) index += static_cast<int64_t>(cur.list->size());
      if (index < 0 || index >= static_cast<int64_t>(cur.list->size())) return Value::Undefined();
      cur = (*cur.list)[static_cast<size_t>(index)];
    } else {
      return Value::Undefined();
    }
  }
  return cur;
}

}  // namespace stepserve::text::jinja
