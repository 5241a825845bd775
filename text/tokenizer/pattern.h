// The {"String": s} / {"Regex": r} pattern objects of Split, Replace (normalizer and decoder).
#pragma once

#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "text/tokenizer/regex.h"

namespace stepserve::text {

// A String pattern matches its text literally (the tokenizers crate escapes it into a regex).
absl::StatusOr<std::unique_ptr<Regex>> PatternFromJson(const nlohmann::json& pattern, std::string_view path);

}  // namespace stepserve::text
