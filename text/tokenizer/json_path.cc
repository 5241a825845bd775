#include "text/tokenizer/json_path.h"

#include "absl/strings/str_cat.h"
#include "text/tokenizer/unicode.h"

namespace stepserve::text {

absl::Status JsonError(std::string_view path, std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("tokenizer.json: ", ToAbsl(path), ": ", ToAbsl(what)));
}

absl::Status JsonUnsupported(std::string_view path, std::string_view what) {
  return absl::UnimplementedError(absl::StrCat("tokenizer.json: ", ToAbsl(path), ": ", ToAbsl(what), " is not supported"));
}

std::string JsonPathJoin(std::string_view path, std::string_view key) {
  return path.empty() ? std::string(key) : absl::StrCat(ToAbsl(path), ".", ToAbsl(key));
}

std::string JsonPathIndex(std::string_view path, size_t index) { return absl::StrCat(ToAbsl(path), "[", index, "]"); }

absl::StatusOr<bool> JsonBool(const nlohmann::json& obj, std::string_view path, const char* key, bool def) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return def;
  if (!it->is_boolean()) return JsonError(JsonPathJoin(path, key), "expected a boolean");
  return it->get<bool>();
}

absl::StatusOr<std::string> JsonString(const nlohmann::json& obj, std::string_view path, const char* key,
                                       std::string_view def) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return std::string(def);
  if (!it->is_string()) return JsonError(JsonPathJoin(path, key), "expected a string");
  return it->get<std::string>();
}

absl::StatusOr<int64_t> JsonInt(const nlohmann::json& obj, std::string_view path, const char* key, int64_t def) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return def;
  if (!it->is_number_integer()) return JsonError(JsonPathJoin(path, key), "expected an integer");
  return it->get<int64_t>();
}

absl::StatusOr<std::string> JsonType(const nlohmann::json& obj, std::string_view path) {
  if (!obj.is_object()) return JsonError(path, "expected an object");
  auto it = obj.find("type");
  if (it == obj.end() || !it->is_string()) return JsonError(JsonPathJoin(path, "type"), "missing or not a string");
  return it->get<std::string>();
}

}  // namespace stepserve::text
