#include "text/tokenizer/post_processor.h"

#include "absl/strings/str_cat.h"
#include "text/tokenizer/json_path.h"

namespace stepserve::text {
namespace {

// ["[CLS]", 101] of Bert/RobertaProcessing.
absl::StatusOr<int32_t> TokenPairId(const nlohmann::json& j, std::string_view path, const char* key) {
  const std::string p = JsonPathJoin(path, key);
  auto it = j.find(key);
  if (it == j.end() || !it->is_array() || it->size() != 2 || !(*it)[1].is_number_integer()) {
    return JsonError(p, "expected [token, id]");
  }
  return (*it)[1].get<int32_t>();
}

absl::Status Build(const nlohmann::json& j, std::string_view path, PostProcessor* pp) {
  if (j.is_null()) return absl::OkStatus();
  absl::StatusOr<std::string> type = JsonType(j, path);
  if (!type.ok()) return type.status();
  if (*type == "ByteLevel") return absl::OkStatus();  // offsets only
  if (*type == "Sequence") {
    const std::string list_path = JsonPathJoin(path, "processors");
    auto it = j.find("processors");
    if (it == j.end() || !it->is_array()) return JsonError(list_path, "expected an array");
    for (size_t i = 0; i < it->size(); ++i) {
      absl::Status s = Build((*it)[i], JsonPathIndex(list_path, i), pp);
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }
  if (*type == "BertProcessing" || *type == "RobertaProcessing") {
    auto cls = TokenPairId(j, path, "cls");
    if (!cls.ok()) return cls.status();
    auto sep = TokenPairId(j, path, "sep");
    if (!sep.ok()) return sep.status();
    pp->prefix.insert(pp->prefix.begin(), *cls);
    pp->suffix.push_back(*sep);
    return absl::OkStatus();
  }
  if (*type == "TemplateProcessing") {
    const std::string single_path = JsonPathJoin(path, "single");
    auto single = j.find("single");
    if (single == j.end() || !single->is_array()) return JsonError(single_path, "expected an array");
    auto specials = j.find("special_tokens");
    std::vector<int32_t> before, after;
    bool seen_sequence = false;
    for (size_t i = 0; i < single->size(); ++i) {
      const auto& piece = (*single)[i];
      const std::string p = JsonPathIndex(single_path, i);
      if (piece.contains("Sequence")) {
        const auto& seq = piece["Sequence"];
        if (!seq.contains("id") || seq["id"] != "A") {
          return JsonUnsupported(JsonPathJoin(p, "Sequence.id"), "a single template over a sequence other than A");
        }
        if (seen_sequence) return JsonUnsupported(p, "a single template with $A twice");
        seen_sequence = true;
      } else if (piece.contains("SpecialToken")) {
        const auto& st = piece["SpecialToken"];
        if (!st.contains("id") || !st["id"].is_string()) return JsonError(JsonPathJoin(p, "SpecialToken.id"), "missing");
        const std::string name = st["id"].get<std::string>();
        if (specials == j.end() || !specials->contains(name)) {
          return JsonError(JsonPathJoin(path, "special_tokens"), absl::StrCat("no entry for ", name));
        }
        const auto& entry = (*specials)[name];
        if (!entry.contains("ids") || !entry["ids"].is_array()) {
          return JsonError(JsonPathJoin(JsonPathJoin(path, "special_tokens"), name + ".ids"), "expected an array");
        }
        for (const auto& id : entry["ids"]) {
          if (!id.is_number_integer()) {
            return JsonError(JsonPathJoin(JsonPathJoin(path, "special_tokens"), name + ".ids"), "expected ids");
          }
          (seen_sequence ? after : before).push_back(id.get<int32_t>());
        }
      } else {
        return JsonError(p, "expected Sequence or SpecialToken");
      }
    }
    if (!seen_sequence) return JsonUnsupported(single_path, "a single template without $A");
    pp->prefix.insert(pp->prefix.begin(), before.begin(), before.end());
    pp->suffix.insert(pp->suffix.end(), after.begin(), after.end());
    return absl::OkStatus();
  }
  return JsonUnsupported(JsonPathJoin(path, "type"), absl::StrCat("post-processor \"", *type, "\""));
}

}  // namespace

absl::StatusOr<PostProcessor> PostProcessorFromJson(const nlohmann::json& j, std::string_view path) {
  PostProcessor pp;
  absl::Status s = Build(j, path, &pp);
  if (!s.ok()) return s;
  return pp;
}

}  // namespace stepserve::text
