#include "text/tokenizer/tokenizer.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "text/tokenizer/added_vocabulary.h"
#include "text/tokenizer/bpe_model.h"
#include "text/tokenizer/decoders.h"
#include "text/tokenizer/json_path.h"
#include "text/tokenizer/normalizers.h"
#include "text/tokenizer/post_processor.h"
#include "text/tokenizer/pre_tokenizers.h"
#include "text/tokenizer/unicode.h"

namespace stepserve::text {
namespace {

// bos_token / eos_token of tokenizer_config.json: a string or an AddedToken object ({"content": ...}).
absl::StatusOr<std::string> ConfigTokenContent(const nlohmann::json& config, const char* key) {
  if (!config.is_object()) return std::string();
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return std::string();
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
    return (*it)["content"].get<std::string>();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("tokenizer_config.json: ", key, ": expected a string or an object with \"content\""));
}

}  // namespace

Tokenizer::Tokenizer() = default;
Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::shared_ptr<const Tokenizer>> Tokenizer::FromJson(const nlohmann::json& tj,
                                                                     const nlohmann::json& config,
                                                                     const nlohmann::json& generation_config) {
  if (!tj.is_object()) return JsonError("(root)", "expected an object");
  std::shared_ptr<Tokenizer> t(new Tokenizer());
  if (auto it = tj.find("truncation"); it != tj.end() && !it->is_null()) {
    return JsonUnsupported("truncation", "truncation (the server limits lengths itself)");
  }
  if (auto it = tj.find("padding"); it != tj.end() && !it->is_null()) {
    // Padding to the batch's longest changes nothing for one sequence; a fixed length would.
    if (it->is_object() && it->contains("strategy") && (*it)["strategy"].is_object()) {
      return JsonUnsupported("padding.strategy", "padding to a fixed length");
    }
  }

  auto normalizer = NormalizerFromJson(tj.value("normalizer", nlohmann::json()), "normalizer");
  if (!normalizer.ok()) return normalizer.status();
  t->normalizer_ = *std::move(normalizer);

  auto pre = PreTokenizerFromJson(tj.value("pre_tokenizer", nlohmann::json()), "pre_tokenizer");
  if (!pre.ok()) return pre.status();
  t->pre_tokenizer_ = std::make_unique<PreTokenizerChain>(*std::move(pre));

  if (!tj.contains("model")) return JsonError("model", "missing");
  auto model = BpeModel::FromJson(tj["model"], "model", t->pre_tokenizer_->byte_level);
  if (!model.ok()) return model.status();
  t->model_ = *std::move(model);

  auto added = AddedVocabulary::FromJson(tj.value("added_tokens", nlohmann::json()), "added_tokens",
                                         t->normalizer_.get());
  if (!added.ok()) return added.status();
  t->added_ = std::make_unique<AddedVocabulary>(*std::move(added));

  auto post = PostProcessorFromJson(tj.value("post_processor", nlohmann::json()), "post_processor");
  if (!post.ok()) return post.status();
  t->post_processor_ = std::make_unique<PostProcessor>(*std::move(post));

  auto decoder = DecoderFromJson(tj.value("decoder", nlohmann::json()), "decoder");
  if (!decoder.ok()) return decoder.status();
  t->decoder_ = *std::move(decoder);

  t->vocab_size_ = std::max(t->model_->max_id(), t->added_->max_id()) + 1;
  t->tokenizer_config_ = config;

  // Special tokens.
  auto bos = ConfigTokenContent(config, "bos_token");
  if (!bos.ok()) return bos.status();
  auto eos = ConfigTokenContent(config, "eos_token");
  if (!eos.ok()) return eos.status();
  SpecialTokens& sp = t->special_;
  sp.bos_token = *bos;
  sp.eos_token = *eos;
  if (!bos->empty()) sp.bos_id = t->TokenToId(*bos);
  if (!eos->empty()) sp.eos_id = t->TokenToId(*eos);
  if (!bos->empty() && !sp.bos_id) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer_config.json: bos_token \"", *bos, "\" is not a token"));
  }
  if (!eos->empty() && !sp.eos_id) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer_config.json: eos_token \"", *eos, "\" is not a token"));
  }
  auto add_eos_id = [&sp](int32_t id) {
    if (std::find(sp.eos_ids.begin(), sp.eos_ids.end(), id) == sp.eos_ids.end()) sp.eos_ids.push_back(id);
  };
  if (sp.eos_id) add_eos_id(*sp.eos_id);
  if (generation_config.is_object()) {
    auto it = generation_config.find("eos_token_id");
    if (it != generation_config.end() && !it->is_null()) {
      if (it->is_number_integer()) {
        add_eos_id(it->get<int32_t>());
      } else if (it->is_array()) {
        for (const auto& id : *it) {
          if (!id.is_number_integer()) {
            return absl::InvalidArgumentError("generation_config.json: eos_token_id: expected integers");
          }
          add_eos_id(id.get<int32_t>());
        }
      } else {
        return absl::InvalidArgumentError("generation_config.json: eos_token_id: expected an integer or a list");
      }
    }
  }

  // transformers' LlamaTokenizerFast (DeepSeek-V3's class) rebuilds the post-processor from add_bos_token
  // and add_eos_token (defaults true and false), replacing tokenizer.json's.
  if (config.is_object() && (config.contains("add_bos_token") || config.contains("add_eos_token"))) {
    const std::string cls = config.value("tokenizer_class", std::string());
    const bool llama = cls.rfind("Llama", 0) == 0 || cls.rfind("CodeLlama", 0) == 0;
    bool add_bos = llama, add_eos = false;
    for (auto [key, field] : {std::pair{"add_bos_token", &add_bos}, std::pair{"add_eos_token", &add_eos}}) {
      auto it = config.find(key);
      if (it == config.end() || it->is_null()) continue;
      if (!it->is_boolean()) {
        return absl::InvalidArgumentError(absl::StrCat("tokenizer_config.json: ", key, ": expected a boolean"));
      }
      *field = it->get<bool>();
    }
    if (add_bos && !sp.bos_id) {
      return absl::InvalidArgumentError("tokenizer_config.json: add_bos_token is true but there is no bos_token");
    }
    if (add_eos && !sp.eos_id) {
      return absl::InvalidArgumentError("tokenizer_config.json: add_eos_token is true but there is no eos_token");
    }
    PostProcessor pp;
    if (add_bos) pp.prefix.push_back(*sp.bos_id);
    if (add_eos) pp.suffix.push_back(*sp.eos_id);
    *t->post_processor_ = std::move(pp);
  }
  return std::shared_ptr<const Tokenizer>(std::move(t));
}

void Tokenizer::EncodeText(std::string_view piece, bool at_start, std::vector<int32_t>* ids) const {
  std::string normalized;
  std::string_view view = piece;
  if (normalizer_ != nullptr) {
    normalized.assign(piece);
    normalizer_->Normalize(&normalized);
    view = normalized;
  }
  added_->SplitNormalized(view, [&](std::string_view part, int32_t id, size_t offset) {
    if (id >= 0) {
      ids->push_back(id);
      return;
    }
    pre_tokenizer_->Run(part, at_start && offset == 0,
                        [&](std::string_view word, bool) { model_->Tokenize(word, ids); });
  });
}

absl::StatusOr<std::vector<int32_t>> Tokenizer::Encode(std::string_view text, bool add_special_tokens) const {
  if (!IsWellFormedUtf8(text)) return absl::InvalidArgumentError("text to encode is not valid UTF-8");
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  added_->SplitRaw(text, [&](std::string_view piece, int32_t id, size_t offset) {
    if (id >= 0) {
      ids.push_back(id);
    } else {
      EncodeText(piece, offset == 0, &ids);
    }
  });
  if (add_special_tokens) post_processor_->Apply(&ids);
  return ids;
}

const std::string* Tokenizer::TokenForDecode(int32_t id, bool skip_special_tokens) const {
  const std::string* token = nullptr;
  if (const AddedToken* added = added_->ById(id)) {
    token = &added->content;
  } else {
    token = model_->IdToToken(id);
  }
  if (token == nullptr) return nullptr;
  if (skip_special_tokens && added_->IsSpecialContent(*token)) return nullptr;
  return token;
}

std::string Tokenizer::Decode(absl::Span<const int32_t> ids, bool skip_special_tokens) const {
  DecodeStream stream(decoder_.get());
  for (int32_t id : ids) {
    if (const std::string* token = TokenForDecode(id, skip_special_tokens)) stream.PushToken(*token);
  }
  stream.Finish();
  return std::move(stream.out());
}

std::optional<int32_t> Tokenizer::TokenToId(std::string_view token) const {
  if (auto id = added_->IdOf(token)) return id;
  return model_->TokenToId(token);
}

std::optional<std::string> Tokenizer::IdToToken(int32_t id) const {
  if (const AddedToken* added = added_->ById(id)) return added->content;
  if (const std::string* token = model_->IdToToken(id)) return *token;
  return std::nullopt;
}

bool Tokenizer::IsSpecial(int32_t id) const {
  const AddedToken* added = added_->ById(id);
  return added != nullptr && added->special;
}

}  // namespace stepserve::text
