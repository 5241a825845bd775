// Chat templates: the Jinja template of a model's tokenizer_config.json (or chat_template.jinja, or a
// --chat_template file) rendered over OpenAI-style messages, as transformers' apply_chat_template does.
#ifndef STEPSERVE_TEXT_JINJA_CHAT_TEMPLATE_H_
#define STEPSERVE_TEXT_JINJA_CHAT_TEMPLATE_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "text/jinja/template.h"

namespace stepserve::text {

class ChatTemplate {
 public:
  using RenderOptions = jinja::RenderOptions;

  // INVALID_ARGUMENT (naming `name`, line and column) when the source does not parse.
  static absl::StatusOr<std::shared_ptr<const ChatTemplate>> Parse(std::string source, std::string name = "default");

  // Picks the template: `override_file` (--chat_template=FILE) when not empty; else `chat_template` of
  // tokenizer_config.json (a string, or a list of {"name", "template"}: `name`, or "default" when `name` is
  // empty); else <model_dir>/chat_template.jinja (<model_dir>/additional_chat_templates/<name>.jinja for a
  // named one). NOT_FOUND when there is none (or no template of that name); INVALID_ARGUMENT when it does not
  // parse or tokenizer_config's chat_template is malformed.
  static absl::StatusOr<std::shared_ptr<const ChatTemplate>> Load(const std::string& model_dir,
                                                                 const nlohmann::json& tokenizer_config,
                                                                 const std::string& override_file,
                                                                 const std::string& name = "");

  // Variables: messages, tools (None when `tools` is null or empty, as vLLM/transformers pass tools=None),
  // add_generation_prompt, bos_token, eos_token, and every key of chat_template_kwargs (which may override
  // bos_token/eos_token but not messages, tools or add_generation_prompt: INVALID_ARGUMENT).
  // Errors of the template (raise_exception included) are INVALID_ARGUMENT naming the template line.
  // nlohmann::json objects iterate in sorted key order, so `tool | tojson` prints sorted keys; pass
  // nlohmann::ordered_json to keep the client's key order, as transformers does.
  absl::StatusOr<std::string> Render(const nlohmann::json& messages, const nlohmann::json& tools,
                                     bool add_generation_prompt, const nlohmann::json& chat_template_kwargs,
                                     const std::string& bos_token, const std::string& eos_token) const;
  absl::StatusOr<std::string> Render(const nlohmann::ordered_json& messages, const nlohmann::ordered_json& tools,
                                     bool add_generation_prompt, const nlohmann::ordered_json& chat_template_kwargs,
                                     const std::string& bos_token, const std::string& eos_token,
                                     const RenderOptions& options = {}) const;

  const std::string& name() const { return template_->name(); }
  const std::string& source() const { return source_; }

 private:
  ChatTemplate() = default;
  std::string source_;
  std::shared_ptr<const jinja::Template> template_;
};

// A Step-style chat template (Step-3.5-Flash's conventions: <|im_start|>role\n...<|im_end|>\n turns, tools
// in the system prompt, <tool_call><function=NAME><parameter=P>...</tool_call> calls, reasoning_content in
// <think>...</think>, generation prompt "<|im_start|>assistant\n<think>\n") for presets without a download.
std::string_view BuiltinStepChatTemplate();

}  // namespace stepserve::text

#endif  // STEPSERVE_TEXT_JINJA_CHAT_TEMPLATE_H_
