// What add_special_tokens adds around the ids of one sequence: tokenizer.json's post-processor
// (TemplateProcessing's single template, BertProcessing, RobertaProcessing, ByteLevel (ids unchanged),
// Sequence, null), or the BOS/EOS that transformers' LlamaTokenizerFast adds where tokenizer_config.json
// sets add_bos_token/add_eos_token (it then replaces the tokenizer.json post-processor).
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace stepserve::text {

struct PostProcessor {
  std::vector<int32_t> prefix;  // before the sequence's ids
  std::vector<int32_t> suffix;  // after them

  void Apply(std::vector<int32_t>* ids) const {
    if (!prefix.empty()) ids->insert(ids->begin(), prefix.begin(), prefix.end());
    ids->insert(ids->end(), suffix.begin(), suffix.end());
  }
};

absl::StatusOr<PostProcessor> PostProcessorFromJson(const nlohmann::json& j, std::string_view path);

}  // namespace stepserve::text
