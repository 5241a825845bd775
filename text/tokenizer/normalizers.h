// Normalizers of tokenizer.json: NFC, NFD, NFKC, NFKD (utf8proc), Lowercase, Replace, Prepend, Strip,
// StripAccents, Sequence.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace stepserve::text {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  // Rewrites valid UTF-8 `s` in place (into valid UTF-8).
  virtual void Normalize(std::string* s) const = 0;
};

// nullptr for a null normalizer or one that changes nothing (an empty Sequence). Unknown types and options
// are errors naming their JSON path.
absl::StatusOr<std::unique_ptr<Normalizer>> NormalizerFromJson(const nlohmann::json& j, std::string_view path);

}  // namespace stepserve::text
