// Tokenizer::FromDirectory: the Hugging Face files of a model directory.
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "text/tokenizer/tokenizer.h"

namespace stepserve::text {
namespace {

// Null when the file does not exist and !required.
absl::StatusOr<nlohmann::json> ReadJsonFile(const std::string& path, bool required) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (!required) return nlohmann::json();
    return absl::NotFoundError(absl::StrCat("cannot open ", path));
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  nlohmann::json j = nlohmann::json::parse(buffer.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(path, " is not valid JSON"));
  return j;
}

}  // namespace

absl::StatusOr<std::shared_ptr<const Tokenizer>> Tokenizer::FromDirectory(const std::string& dir) {
  auto tokenizer_json = ReadJsonFile(dir + "/tokenizer.json", true);
  if (!tokenizer_json.ok()) return tokenizer_json.status();
  auto config = ReadJsonFile(dir + "/tokenizer_config.json", false);
  if (!config.ok()) return config.status();
  auto generation = ReadJsonFile(dir + "/generation_config.json", false);
  if (!generation.ok()) return generation.status();
  auto t = FromJson(*tokenizer_json, *config, *generation);
  if (!t.ok()) return absl::Status(t.status().code(), absl::StrCat(dir, ": ", t.status().message()));
  return t;
}

}  // namespace stepserve::text
