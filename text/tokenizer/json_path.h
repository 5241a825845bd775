// Reading tokenizer.json with errors that name the JSON path of the offending component or option.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace stepserve::text {

// INVALID_ARGUMENT "tokenizer.json: <path>: <what>".
absl::Status JsonError(std::string_view path, std::string_view what);
// UNIMPLEMENTED "tokenizer.json: <path>: <what> is not supported".
absl::Status JsonUnsupported(std::string_view path, std::string_view what);

// Field accessors: absent or null gives the default; a wrong type is an error naming path.key.
absl::StatusOr<bool> JsonBool(const nlohmann::json& obj, std::string_view path, const char* key, bool def);
absl::StatusOr<std::string> JsonString(const nlohmann::json& obj, std::string_view path, const char* key,
                                       std::string_view def);
absl::StatusOr<int64_t> JsonInt(const nlohmann::json& obj, std::string_view path, const char* key, int64_t def);
// The "type" of a component object.
absl::StatusOr<std::string> JsonType(const nlohmann::json& obj, std::string_view path);

std::string JsonPathJoin(std::string_view path, std::string_view key);
std::string JsonPathIndex(std::string_view path, size_t index);

}  // namespace stepserve::text
