#include "text/tokenizer/pattern.h"

#include "absl/strings/str_cat.h"
#include "text/tokenizer/json_path.h"

namespace stepserve::text {

absl::StatusOr<std::unique_ptr<Regex>> PatternFromJson(const nlohmann::json& pattern, std::string_view path) {
  if (!pattern.is_object() || pattern.size() != 1) {
    return JsonError(path, "expected {\"String\": ...} or {\"Regex\": ...}");
  }
  const auto entry = pattern.begin();
  const std::string kind = entry.key();
  const nlohmann::json& value = entry.value();
  if (!value.is_string()) return JsonError(JsonPathJoin(path, kind), "expected a string");
  absl::StatusOr<std::unique_ptr<Regex>> re;
  if (kind == "String") {
    re = Regex::Literal(value.get<std::string>());
  } else if (kind == "Regex") {
    re = Regex::Compile(value.get<std::string>());
  } else {
    return JsonUnsupported(JsonPathJoin(path, kind), absl::StrCat("pattern kind \"", kind, "\""));
  }
  if (!re.ok()) return JsonError(JsonPathJoin(path, kind), std::string(re.status().message()));
  return re;
}

}  // namespace stepserve::text
