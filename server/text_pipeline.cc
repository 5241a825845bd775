#include "server/text_pipeline.h"

#include <sys/stat.h>

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "model/loading/presets.h"
#include "server/metrics.h"
#include "text/parsers/chat_request.h"
#include "text/tokenizer/builtin_tokenizer.h"

namespace stepserve::server {
namespace {

using OrderedJson = nlohmann::ordered_json;
using Json = nlohmann::json;

bool IsFile(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool IsDirectory(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// "small:4" -> "small"; a directory stays as it is.
std::string PresetPart(const std::string& spec) { return spec.substr(0, spec.find(':')); }

bool IsPresetSpec(const std::string& spec) { return !IsDirectory(spec) && IsPresetName(PresetPart(spec)); }

// Prefixes the field an error names ("messages[0].role: ..." -> "chat.messages[0].role: ...").
absl::Status WithFieldPrefix(const absl::Status& status, const std::string& prefix) {
  if (status.ok() || prefix.empty()) return status;
  return absl::Status(status.code(), absl::StrCat(prefix, status.message()));
}

// Whether the rendered prompt leaves the model inside a <think> block (the Step generation prompt opens one).
bool EndsInsideThink(const std::string& prompt) {
  const size_t open = prompt.rfind("<think>");
  if (open == std::string::npos) return false;
  const size_t close = prompt.rfind("</think>");
  return close == std::string::npos || close < open;
}

// The normalized messages (sorted keys) with each assistant tool call's arguments as the client ordered them:
// templates print arguments in their order, as transformers does with the dict json.loads returns.
OrderedJson OrderedMessages(const Json& normalized, const OrderedJson& original) {
  OrderedJson out = normalized;
  for (size_t i = 0; i < out.size() && i < original.size(); ++i) {
    OrderedJson& msg = out[i];
    if (!msg.contains("tool_calls") || !original[i].is_object()) continue;
    auto calls_it = original[i].find("tool_calls");
    if (calls_it == original[i].end() || !calls_it->is_array()) continue;
    const OrderedJson& calls = *calls_it;
    for (size_t j = 0; j < msg["tool_calls"].size() && j < calls.size(); ++j) {
      const OrderedJson& call = calls[j];
      if (!call.is_object()) continue;
      auto fn_it = call.find("function");
      if (fn_it == call.end() || !fn_it->is_object()) continue;
      const OrderedJson& fn = *fn_it;
      auto args = fn.find("arguments");
      if (args == fn.end()) continue;
      OrderedJson ordered;
      if (args->is_object()) {
        ordered = *args;
      } else if (args->is_string()) {
        ordered = OrderedJson::parse(args->get_ref<const std::string&>(), nullptr, /*allow_exceptions=*/false);
      }
      if (ordered.is_object()) msg["tool_calls"][j]["function"]["arguments"] = std::move(ordered);
    }
  }
  return out;
}

// ToolsForTemplate over the client's ordered tools.
OrderedJson OrderedToolsForTemplate(const OrderedJson& tools, const text::ToolChoice& choice) {
  OrderedJson out = OrderedJson::array();
  if (choice.mode == text::ToolChoice::Mode::kNone || !tools.is_array()) return out;
  for (const auto& tool : tools) {
    if (choice.mode == text::ToolChoice::Mode::kNamed) {
      auto fn = tool.find("function");
      if (fn == tool.end() || !fn->is_object() || fn->value("name", std::string()) != choice.name) continue;
    }
    out.push_back(tool);
  }
  return out;
}

}  // namespace

std::string DefaultServedModelName(const std::string& model_spec) {
  if (IsPresetSpec(model_spec)) return model_spec;
  std::string path = model_spec;
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  const size_t slash = path.rfind('/');
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  return base.empty() ? std::string("model") : base;
}

std::string FieldOfError(const absl::Status& status) {
  const absl::string_view message = status.message();
  const size_t colon = message.find(": ");
  if (colon == absl::string_view::npos || colon == 0) return "";
  const absl::string_view field = message.substr(0, colon);
  for (char c : field) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                    c == '.' || c == '[' || c == ']';
    if (!ok) return "";
  }
  return std::string(field);
}

absl::StatusOr<std::shared_ptr<TextPipeline>> TextPipeline::Load(const TextOptions& options,
                                                                 const std::string& model_spec,
                                                                 int model_vocab_size) {
  std::string name = options.served_model_name.empty() ? DefaultServedModelName(model_spec) : options.served_model_name;
  std::shared_ptr<const text::Tokenizer> tokenizer;
  std::shared_ptr<const text::ChatTemplate> chat_template;
  const bool preset = IsPresetSpec(model_spec);
  std::string tokenizer_dir = options.tokenizer_dir;
  if (tokenizer_dir.empty() && preset) {
    auto builtin = text::BuiltinTokenizer(model_vocab_size);
    if (!builtin.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--model=", model_spec, ": no builtin tokenizer for a vocabulary of ",
                                                     model_vocab_size, ": ", builtin.status().message()));
    }
    tokenizer = *std::move(builtin);
    if (options.chat_template_file.empty()) {
      auto parsed = text::ChatTemplate::Parse(std::string(text::BuiltinStepChatTemplate()), "builtin-step");
      if (!parsed.ok()) return absl::InternalError(absl::StrCat("builtin chat template: ", parsed.status().message()));
      chat_template = *std::move(parsed);
    } else {
      auto loaded = text::ChatTemplate::Load("", tokenizer->tokenizer_config(), options.chat_template_file);
      if (!loaded.ok()) return absl::InvalidArgumentError(absl::StrCat("--chat_template: ", loaded.status().message()));
      chat_template = *std::move(loaded);
    }
  } else {
    const bool explicit_dir = !tokenizer_dir.empty();
    if (!explicit_dir) tokenizer_dir = model_spec;
    if (!IsFile(tokenizer_dir + "/tokenizer.json")) {
      if (explicit_dir) {
        return absl::InvalidArgumentError(
            absl::StrCat("--tokenizer=", tokenizer_dir, ": no tokenizer.json in that directory"));
      }
      if (!options.chat_template_file.empty()) {
        return absl::InvalidArgumentError(absl::StrCat("--chat_template needs a tokenizer, and ", tokenizer_dir,
                                                       " has no tokenizer.json: pass --tokenizer=DIR"));
      }
      // A checkpoint without a tokenizer: token ids only.
      return std::make_shared<TextPipeline>(nullptr, nullptr, std::move(name));
    }
    auto loaded = text::Tokenizer::FromDirectory(tokenizer_dir);
    if (!loaded.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--tokenizer=", tokenizer_dir, ": ", loaded.status().message()));
    }
    tokenizer = *std::move(loaded);
    auto tmpl = text::ChatTemplate::Load(tokenizer_dir, tokenizer->tokenizer_config(), options.chat_template_file);
    if (tmpl.ok()) {
      chat_template = *std::move(tmpl);
    } else if (!options.chat_template_file.empty() || tmpl.status().code() != absl::StatusCode::kNotFound) {
      return absl::InvalidArgumentError(absl::StrCat(options.chat_template_file.empty() ? "--tokenizer" : "--chat_template",
                                                     ": ", tmpl.status().message()));
    }
  }
  if (tokenizer->vocab_size() > model_vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--tokenizer: the tokenizer has ids up to ", tokenizer->vocab_size() - 1, " but the model's vocabulary has ",
        model_vocab_size, " ids (vocab_size); this tokenizer does not belong to this model"));
  }
  return std::make_shared<TextPipeline>(std::move(tokenizer), std::move(chat_template), std::move(name));
}

TextPipeline::TextPipeline(std::shared_ptr<const text::Tokenizer> tokenizer,
                           std::shared_ptr<const text::ChatTemplate> chat_template, std::string model_name)
    : tokenizer_(std::move(tokenizer)), chat_template_(std::move(chat_template)), model_name_(std::move(model_name)) {}

absl::Status TextPipeline::RequireTokenizer(const std::string& what) const {
  if (tokenizer_ != nullptr) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat(what, " needs a tokenizer and none is loaded: start the server with --tokenizer=DIR (a directory "
                         "with tokenizer.json), or send token ids"));
}

absl::StatusOr<std::vector<int32_t>> TextPipeline::Encode(const std::string& text, bool add_special_tokens) const {
  const absl::Time start = absl::Now();
  auto ids = tokenizer_->Encode(text, add_special_tokens);
  if (metrics_ != nullptr) metrics_->ObserveTokenizerTime(absl::Now() - start);
  return ids;
}

absl::StatusOr<PreparedPrompt> TextPipeline::Prepare(const TextInput& input, const PrepareOptions& options) const {
  PreparedPrompt prepared;
  switch (input.kind) {
    case TextInput::Kind::kTokenIds:
      prepared.ids = input.token_ids;
      return prepared;
    case TextInput::Kind::kPrompt: {
      if (!text::IsValidUtf8(input.prompt)) return absl::InvalidArgumentError("prompt: is not valid UTF-8");
      if (absl::Status s = RequireTokenizer("prompt"); !s.ok()) return s;
      auto ids = Encode(input.prompt, input.add_special_tokens);
      if (!ids.ok()) return absl::InvalidArgumentError(absl::StrCat("prompt: ", ids.status().message()));
      prepared.ids = *std::move(ids);
      prepared.is_text = true;
      if (prepared.ids.empty() && options.max_context > 0) {
        return absl::InvalidArgumentError("prompt: encodes to no token");
      }
      if (options.max_context > 0 && static_cast<int64_t>(prepared.ids.size()) >= options.max_context) {
        return absl::InvalidArgumentError(absl::StrCat("prompt: ", prepared.ids.size(),
                                                       " tokens, which leaves no room to generate in the maximum "
                                                       "context of ", options.max_context, " tokens"));
      }
      return prepared;
    }
    case TextInput::Kind::kChat:
      return PrepareChat(input, options);
  }
  return absl::InternalError("unknown input kind");
}

absl::StatusOr<PreparedPrompt> TextPipeline::PrepareChat(const TextInput& input, const PrepareOptions& options) const {
  const std::string& prefix = options.chat_field_prefix;
  // Validation first (its errors name the field), whatever is loaded; the caps before anything is walked.
  if (input.messages.is_array() && input.messages.size() > static_cast<size_t>(limits_.max_chat_messages)) {
    return absl::InvalidArgumentError(absl::StrCat(prefix, "messages: ", input.messages.size(),
                                                   " messages, more than --max_chat_messages=",
                                                   limits_.max_chat_messages));
  }
  if (input.tools.is_array() && input.tools.size() > static_cast<size_t>(limits_.max_tools)) {
    return absl::InvalidArgumentError(absl::StrCat(prefix, "tools: ", input.tools.size(),
                                                   " tools, more than --max_tools=", limits_.max_tools));
  }
  auto messages = text::NormalizeMessages(Json(input.messages));
  if (!messages.ok()) return WithFieldPrefix(messages.status(), prefix);
  auto tools = text::NormalizeTools(Json(input.tools));
  if (!tools.ok()) return WithFieldPrefix(tools.status(), prefix);
  auto choice = text::ParseToolChoice(Json(input.tool_choice), *tools);
  if (!choice.ok()) return WithFieldPrefix(choice.status(), prefix);
  if (!input.chat_template_kwargs.is_null() && !input.chat_template_kwargs.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(prefix, "chat_template_kwargs: must be an object"));
  }
  if (absl::Status s = RequireTokenizer("chat"); !s.ok()) return s;
  if (chat_template_ == nullptr) {
    return absl::FailedPreconditionError(
        "chat needs a chat template and the tokenizer has none: start the server with --chat_template=FILE");
  }
  const text::SpecialTokens& special = tokenizer_->special_tokens();
  const absl::Time start = absl::Now();
  auto rendered = chat_template_->Render(OrderedMessages(*messages, input.messages),
                                         OrderedToolsForTemplate(input.tools, *choice), input.add_generation_prompt,
                                         input.chat_template_kwargs.is_null() ? OrderedJson::object()
                                                                              : input.chat_template_kwargs,
                                         special.bos_token, special.eos_token);
  if (metrics_ != nullptr) metrics_->ObserveChatTemplateTime(absl::Now() - start);
  if (!rendered.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(prefix, "messages: the chat template failed: ", rendered.status().message()));
  }
  auto ids = Encode(*rendered, /*add_special_tokens=*/false);
  if (!ids.ok()) return absl::InvalidArgumentError(absl::StrCat(prefix, "messages: ", ids.status().message()));
  PreparedPrompt prepared;
  prepared.ids = *std::move(ids);
  prepared.is_text = true;
  prepared.is_chat = true;
  if (prepared.ids.empty() && options.max_context > 0) {
    return absl::InvalidArgumentError(absl::StrCat(prefix, "messages: render to no token"));
  }
  if (options.max_context > 0 && static_cast<int64_t>(prepared.ids.size()) >= options.max_context) {
    return absl::InvalidArgumentError(absl::StrCat(prefix, "messages: the prompt has ", prepared.ids.size(),
                                                   " tokens after the chat template, which leaves no room to "
                                                   "generate in the maximum context of ", options.max_context,
                                                   " tokens"));
  }
  text::ChatOutputOptions& out = prepared.chat_output;
  // Reasoning is parsed when the vocabulary has the tags; the prompt decides whether output starts in it.
  out.parse_reasoning = tokenizer_->TokenToId("</think>").has_value();
  out.starts_in_reasoning = out.parse_reasoning && EndsInsideThink(*rendered);
  out.parse_tool_calls = text::ShouldParseToolCalls(*tools, *choice);
  out.tools = *tools;
  return prepared;
}

absl::StatusOr<std::string> TextPipeline::Detokenize(const std::vector<int32_t>& ids, bool skip_special_tokens,
                                                     const std::string& field) const {
  if (absl::Status s = RequireTokenizer("detokenize"); !s.ok()) return s;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= tokenizer_->vocab_size()) {
      return absl::InvalidArgumentError(absl::StrCat(field, "[", i, "]: token id ", ids[i],
                                                     " is outside the tokenizer's vocabulary [0, ",
                                                     tokenizer_->vocab_size(), ")"));
    }
  }
  const absl::Time start = absl::Now();
  std::string text = tokenizer_->Decode(ids, skip_special_tokens);
  if (metrics_ != nullptr) metrics_->ObserveTokenizerTime(absl::Now() - start);
  return text;
}

void TextPipeline::FillModelInfo(v1::ModelInfo* info) const {
  info->set_tokenizer_loaded(tokenizer_ != nullptr);
  info->set_chat_template_loaded(chat_template_ != nullptr);
  if (tokenizer_ == nullptr) return;
  const text::SpecialTokens& special = tokenizer_->special_tokens();
  info->set_bos_token(special.bos_token);
  info->set_eos_token(special.eos_token);
  for (int32_t id = 0; id < tokenizer_->vocab_size(); ++id) {
    if (!tokenizer_->IsSpecial(id)) continue;
    if (auto token = tokenizer_->IdToToken(id)) info->add_special_tokens(*token);
  }
}

}  // namespace stepserve::server
